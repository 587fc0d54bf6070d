package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/webfiles"
)

// serveAPI runs fx's API through Serve (what cmd/serve runs), with bodyTimeout shortened to d.
func serveAPI(t *testing.T, fx *apiFixture, d time.Duration) string {
	old := bodyTimeout
	bodyTimeout = d
	t.Cleanup(func() { bodyTimeout = old })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, fx.api, time.Second, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// A body trickled in a byte at a time gets 408 once its time is up, instead of holding the connection.
func TestSlowBodyTimesOut(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	addr := serveAPI(t, fx, 300*time.Millisecond)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	body := `{"messages": [{"role": "user", "content": "Hi"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	go func() {
		for i := range len(body) {
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // the test's guard against a hang, not a measurement
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "the server did not answer a trickled body")
	data, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(data))
	require.Contains(t, string(data), `"code":"request_timeout"`)
}

// The deadline is on the body only: an answer streamed for longer than bodyTimeout runs to its end.
func TestLongStreamOutlivesBodyTimeout(t *testing.T) {
	const timeout, tokens, perToken = 100 * time.Millisecond, 30, 20 * time.Millisecond // 600 ms of answer
	fx := newAPIFixture(t, APIConfig{}, perToken, true)
	addr := serveAPI(t, fx, timeout)
	body := fmt.Sprintf(`{"messages": [{"role": "user", "content": "Go on."}], "max_tokens": %d, "stream": true}`, tokens)
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(data), `"finish_reason":"length"`)
	require.True(t, strings.HasSuffix(string(data), "data: [DONE]\n\n"), "the stream was cut: %s", data)
}

func TestAPISendsNosniff(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	for _, body := range []string{`{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}`, `{`} {
		resp, _ := fx.post(t, body)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), body)
	}
	resp, err := http.Get(fx.srv.URL + "/v1/models")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
}

// The page's policy goes out as a header on HTML, with frame-ancestors, and equals index.html's meta tag.
func TestSiteSendsPageCSP(t *testing.T) {
	fx := newSiteFixture(t)
	for path, want := range map[string]string{"/": webfiles.PageCSP, "/docs/": webfiles.PageCSP, "/app.js": "", "/model/manifest.json": ""} {
		rec := httptest.NewRecorder()
		fx.site.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		require.Equal(t, 200, rec.Code, path)
		require.Equal(t, want, rec.Header().Get("Content-Security-Policy"), path)
	}
	require.Contains(t, webfiles.PageCSP, "frame-ancestors 'none'")

	page, err := os.ReadFile("../web/index.html")
	require.NoError(t, err)
	meta := regexp.MustCompile(`<meta http-equiv="Content-Security-Policy" content="([^"]*)">`).FindSubmatch(page)
	require.NotNil(t, meta, "web/index.html has no CSP meta tag")
	require.Equal(t, string(meta[1])+"; frame-ancestors 'none'", webfiles.PageCSP)

	placeholder := httptest.NewRecorder()
	site, err := NewSite(SiteConfig{Site: t.TempDir() + "/missing"})
	require.NoError(t, err)
	site.ServeHTTP(placeholder, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, webfiles.PageCSP, placeholder.Header().Get("Content-Security-Policy"))
}
