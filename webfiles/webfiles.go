// Package webfiles is how the chat site and model files are served over HTTP, by cmd/serve (package server)
// and by the edge worker alike: content types, caching and CORS, so a page cannot tell the two apart.
package webfiles

import (
	"net/http"
	"path"
	"strings"
)

// IsShard reports whether a key's file name is a content-addressed shard (shard-NNNNN-<16 hex>.bin): its
// bytes never change under that name, so it is cached as immutable, at the edge and in browsers.
func IsShard(key string) bool {
	name := path.Base(key)
	digits, ok := strings.CutPrefix(name, "shard-")
	if !ok {
		return false
	}
	digits, hash, ok := strings.Cut(digits, "-")
	hash, ok2 := strings.CutSuffix(hash, ".bin")
	if !ok || !ok2 || digits == "" || len(hash) != 16 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, c := range hash {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// contentTypes are set explicitly, the same on every machine and at the edge (a system MIME table varies):
// a browser refuses to stream-compile wasm or run a module served with the wrong type.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".wasm":        "application/wasm",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".txt":         "text/plain; charset=utf-8",
	".bin":         "application/octet-stream",
	".model":       "application/octet-stream",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".pdf":         "application/pdf",
	".xml":         "text/xml; charset=utf-8",
	".woff2":       "font/woff2", // the page's KaTeX fonts
	".woff":        "font/woff",
	".ttf":         "font/ttf",
}

// ContentType returns the type a file is served with; "" when its extension is not known.
func ContentType(key string) string {
	return contentTypes[strings.ToLower(path.Ext(key))]
}

// CacheControl returns the Cache-Control header for a key: a year and immutable for shards, revalidation
// (ETag → 304) for everything else (manifest.json changes between conversions, the page between builds).
func CacheControl(key string) string {
	if IsShard(key) {
		return "public, max-age=31536000, immutable"
	}
	return "no-cache"
}

// PageCSP is the Content-Security-Policy of the site's HTML pages: index.html's meta tag (a test keeps
// the two equal) plus frame-ancestors, which only a header can say, so no other site can frame the page
// (clickjacking). Scripts do not get it: a worker's policy comes from its script's response, and the
// engine's worker compiles wasm and may load a model from another origin.
const PageCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'"

// SetPageCSP sets PageCSP when key is an HTML page.
func SetPageCSP(h http.Header, key string) {
	if strings.HasPrefix(ContentType(key), "text/html") {
		h.Set("Content-Security-Policy", PageCSP)
	}
}

// SetCORS sets the headers that let a page on another origin load a model (on /model/ responses).
func SetCORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Content-Encoding, Accept-Ranges, ETag, Last-Modified")
}

// SetPreflight adds the preflight answer's headers (with SetCORS's); the status is 204.
func SetPreflight(h http.Header) {
	h.Set("Access-Control-Allow-Methods", "GET, HEAD")
	h.Set("Access-Control-Allow-Headers", "Range, If-None-Match, If-Modified-Since, If-Range")
	h.Set("Access-Control-Max-Age", "86400")
}
