package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	api := Guard(ok, GuardConfig{Addr: "127.0.0.1:23333", Origins: []string{"https://app.example"}, CheckOrigin: true})
	site := Guard(ok, GuardConfig{Addr: "127.0.0.1:8080"})
	lan := Guard(ok, GuardConfig{Addr: "0.0.0.0:23333", CheckOrigin: true})
	for _, c := range []struct {
		name         string
		h            http.Handler
		method, host string
		origin       string
		status       int
		code         string
		allowOrigin  string
	}{
		{"loopback, no origin", api, "POST", "127.0.0.1:23333", "", 200, "", ""},
		{"localhost", api, "GET", "localhost:23333", "", 200, "", ""},
		{"ipv6 loopback", api, "GET", "[::1]:23333", "", 200, "", ""},
		{"rebinding", api, "POST", "evil.example:23333", "", 403, "forbidden_host", ""},
		{"rebinding on the site", site, "GET", "evil.example:8080", "", 403, "forbidden_host", ""},
		{"own origin", api, "POST", "127.0.0.1:23333", "http://127.0.0.1:23333", 200, "", "http://127.0.0.1:23333"},
		{"loopback origin", api, "POST", "127.0.0.1:23333", "http://localhost:5173", 200, "", "http://localhost:5173"},
		{"listed origin", api, "POST", "127.0.0.1:23333", "https://app.example", 200, "", "https://app.example"},
		{"foreign origin", api, "POST", "127.0.0.1:23333", "https://evil.example", 403, "forbidden_origin", ""},
		{"foreign origin on the site", site, "GET", "127.0.0.1:8080", "https://evil.example", 200, "", ""},
		{"any host off loopback", lan, "POST", "192.168.1.5:23333", "", 200, "", ""},
		{"foreign origin off loopback", lan, "POST", "192.168.1.5:23333", "https://evil.example", 403, "forbidden_origin", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, "/v1/models", nil)
			r.Host = c.host
			if c.origin != "" {
				r.Header.Set("Origin", c.origin)
			}
			w := httptest.NewRecorder()
			c.h.ServeHTTP(w, r)
			require.Equal(t, c.status, w.Code, w.Body.String())
			require.Equal(t, c.allowOrigin, w.Header().Get("Access-Control-Allow-Origin"))
			if c.code != "" {
				var e struct {
					Error struct{ Message, Code string }
				}
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
				require.Equal(t, c.code, e.Error.Code)
				want := "the Host header '" + c.host + "'"
				if c.code == "forbidden_origin" {
					want = "the Origin '" + c.origin + "'"
				}
				require.Contains(t, e.Error.Message, want)
			}
		})
	}

	// Preflight for an allowed origin is answered; the handler never sees it.
	r := httptest.NewRequest(http.MethodOptions, "/v1/chat/completions", nil)
	r.Host = "127.0.0.1:23333"
	r.Header.Set("Origin", "https://app.example")
	r.Header.Set("Access-Control-Request-Method", "POST")
	r.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	w := httptest.NewRecorder()
	api.ServeHTTP(w, r)
	require.Equal(t, http.StatusNoContent, w.Code)
	require.Equal(t, "https://app.example", w.Header().Get("Access-Control-Allow-Origin"))
	require.Equal(t, "authorization, content-type", w.Header().Get("Access-Control-Allow-Headers"))
	require.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "POST")
	r.Header.Set("Origin", "https://evil.example")
	w = httptest.NewRecorder()
	api.ServeHTTP(w, r)
	require.Equal(t, http.StatusForbidden, w.Code)
}
