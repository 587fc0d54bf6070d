package server

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
)

// OriginsEnv lists extra allowed origins (comma-separated), like Ollama's OLLAMA_ORIGINS; cmd/serve's
// -origins flag defaults to it.
const OriginsEnv = "ILMWEB_ORIGINS"

// GuardConfig says who may talk to a local server.
type GuardConfig struct {
	// Addr is the listen address. On a loopback address the Host header must be a loopback name or
	// address (or Addr's own host): a foreign Host means a page on another site resolved its own name to
	// 127.0.0.1 (DNS rebinding). On any other address the server is meant to be reached by other names.
	Addr string
	// Origins are the origins (scheme://host[:port]) whose pages may call the server besides its own
	// origin and loopback ones; "*" allows any.
	Origins []string
	// CheckOrigin refuses requests from other origins (the API); without it only Host is checked (the
	// static site, whose model files are meant for pages anywhere).
	CheckOrigin bool
}

// ParseOrigins splits a comma-separated list of origins.
func ParseOrigins(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// DefaultOrigins is the origins in $ILMWEB_ORIGINS.
func DefaultOrigins() string { return os.Getenv(OriginsEnv) }

// Guard wraps h: requests with a foreign Host or a disallowed Origin get 403; allowed cross-origin
// requests get CORS headers and their preflight an answer.
func Guard(h http.Handler, cfg GuardConfig) http.Handler {
	listenHost, _, _ := net.SplitHostPort(cfg.Addr)
	checkHost := isLoopback(listenHost)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if checkHost && !isLoopback(host) && !strings.EqualFold(host, listenHost) {
			forbid(w, "forbidden_host", "the Host header '"+r.Host+"' is not a loopback name or address of this server; requests reaching it under another name are refused (DNS rebinding protection)")
			return
		}
		origin := r.Header.Get("Origin")
		if origin == "" || !cfg.CheckOrigin {
			h.ServeHTTP(w, r)
			return
		}
		if !originAllowed(origin, r.Host, cfg.Origins) {
			forbid(w, "forbidden_origin", "the Origin '"+origin+"' is not allowed to call this server; add it with -origins or $"+OriginsEnv)
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				hd.Set("Access-Control-Allow-Headers", req)
			}
			hd.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func forbid(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// originAllowed: the server's own origin (same host and port as the request), a loopback origin, or one
// listed.
func originAllowed(origin, reqHost string, allowed []string) bool {
	if slices.Contains(allowed, "*") || slices.Contains(allowed, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, reqHost) || isLoopback(u.Hostname())
}
