// Package worker is the edge server of cmd/worker: a Cloudflare Worker (Go compiled to wasm, run by
// github.com/syumai/workers) that serves the chat site and converted models out of one R2 bucket with the
// headers cmd/serve sends (package server's Site), so a page cannot tell the two apart.
//
// Bucket layout: the built site (make web) under "site/", model dirs under "model/":
//
//	GET /                     → site/index.html
//	GET /app.js               → site/app.js
//	GET /model/manifest.json  → model/manifest.json
//	GET /model/x/shard-…bin   → model/x/shard-…bin   (several models: ?model=model/x/)
//
// This file holds what does not need a JavaScript runtime (URL → key, content types, caching, ranges, ETags), so
// it is tested natively against package server; handler_js.go is the part that talks to R2 and the edge cache.
package worker

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ilmweb/ilmweb/webfiles"
)

// Binding is the R2 bucket's binding name in wrangler.toml.
const Binding = "ILMWEB"

// Key prefixes in the bucket.
const (
	SitePrefix  = "site/"
	ModelPrefix = "model/"
)

// Resolve maps a request's (decoded) URL path to its bucket key. A path ending in "/" names that
// directory's index.html. It returns status 400 for paths that try to climb out ("..", ".", backslashes,
// NULs) and 404 for dotfiles and empty segments, as package server does. model says whether the path is
// under /model, where CORS applies.
func Resolve(p string) (key string, model bool, status int) {
	rest := strings.TrimPrefix(p, "/")
	prefix := SitePrefix
	if rest == "model" || strings.HasPrefix(rest, "model/") {
		model, prefix = true, ModelPrefix
		rest = strings.TrimPrefix(strings.TrimPrefix(rest, "model"), "/")
	}
	if rest == "" {
		return prefix + "index.html", model, 0
	}
	dir := strings.HasSuffix(rest, "/")
	for _, seg := range strings.Split(strings.TrimSuffix(rest, "/"), "/") {
		switch {
		case seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00"):
			return "", model, http.StatusBadRequest
		case seg == "" || seg[0] == '.':
			return "", model, http.StatusNotFound
		}
	}
	if dir {
		rest += "index.html"
	}
	return prefix + rest, model, 0
}

// Meta is what an R2 object's metadata says about it.
type Meta struct {
	Size        int64
	ETag        string // R2's httpEtag: quoted, strong
	Modified    time.Time
	ContentType string // the object's own (set at upload), used for unknown extensions
}

// Reply is Decide's answer: the status, and which bytes of the object the body holds (Length 0 and Body
// false: no body).
type Reply struct {
	Status         int
	Offset, Length int64
	Body           bool
}

// Decide works out the response to a GET or HEAD of key from its metadata, as net/http's ServeContent
// would: conditional requests (If-None-Match, then If-Modified-Since) give 304; one byte range gives 206
// with Content-Range, an unsatisfiable or malformed one 416; If-Range that no longer matches, or several
// ranges, give the whole object (200, which a server may always answer). It sets the response headers in out.
func Decide(method string, req http.Header, key string, m Meta, out http.Header) Reply {
	ctype := webfiles.ContentType(key)
	if ctype == "" {
		ctype = m.ContentType
	}
	out.Set("Cache-Control", webfiles.CacheControl(key))
	webfiles.SetPageCSP(out, key)
	if m.ETag != "" {
		out.Set("ETag", m.ETag)
	}
	if !m.Modified.IsZero() {
		out.Set("Last-Modified", m.Modified.UTC().Format(http.TimeFormat))
	}
	if notModified(req, m) {
		if m.ETag != "" {
			out.Del("Last-Modified") // as net/http does: the ETag is the validator
		}
		return Reply{Status: http.StatusNotModified}
	}
	if ctype != "" {
		out.Set("Content-Type", ctype)
	}
	out.Set("Accept-Ranges", "bytes")
	body := method != http.MethodHead
	if rng := req.Get("Range"); rng != "" && ifRange(req.Get("If-Range"), m) {
		start, length, status := parseRange(rng, m.Size)
		switch status {
		case http.StatusPartialContent:
			out.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+length-1, 10)+"/"+strconv.FormatInt(m.Size, 10))
			out.Set("Content-Length", strconv.FormatInt(length, 10))
			return Reply{Status: status, Offset: start, Length: length, Body: body && length > 0}
		case http.StatusRequestedRangeNotSatisfiable:
			for _, k := range []string{"Cache-Control", "ETag", "Last-Modified"} {
				out.Del(k) // as net/http's ServeContent does for its errors
			}
			out.Set("Content-Range", "bytes */"+strconv.FormatInt(m.Size, 10))
			out.Set("Content-Type", "text/plain; charset=utf-8")
			return Reply{Status: status}
		}
	}
	out.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	return Reply{Status: http.StatusOK, Length: m.Size, Body: body && m.Size > 0}
}

// notModified evaluates If-None-Match (weak comparison, "*" matches anything) or, without it, If-Modified-Since.
func notModified(req http.Header, m Meta) bool {
	if inm := req.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || m.ETag != "" && strings.TrimPrefix(tag, "W/") == strings.TrimPrefix(m.ETag, "W/") {
				return true
			}
		}
		return false
	}
	if ims := req.Get("If-Modified-Since"); ims != "" && !m.Modified.IsZero() {
		t, err := http.ParseTime(ims)
		return err == nil && !m.Modified.Truncate(time.Second).After(t)
	}
	return false
}

// ifRange says whether a Range header applies: without If-Range it does; with one, only while the
// object's ETag (strong comparison) or Last-Modified date still match it.
func ifRange(ir string, m Meta) bool {
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) {
		return m.ETag != "" && ir == m.ETag && !strings.HasPrefix(m.ETag, "W/")
	}
	t, err := http.ParseTime(ir)
	return err == nil && !m.Modified.IsZero() && m.Modified.Truncate(time.Second).Equal(t)
}

// parseRange reads a Range header against an object of size bytes. One range gives 206 with its start
// and length; a malformed header or one whose range starts past the end gives 416; several ranges give 0
// (serve the whole object: R2 reads one range at a time, and the model's downloads only ever ask for one).
func parseRange(header string, size int64) (start, length int64, status int) {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	if strings.Contains(spec, ",") {
		return 0, 0, 0
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 || strings.HasPrefix(last, "-") {
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		if n == 0 || size == 0 {
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		n = min(n, size)
		return size - n, n, http.StatusPartialContent
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 || strings.HasPrefix(first, "+") {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	if s >= size {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	end := size - 1
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || e < s || strings.HasPrefix(last, "+") {
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		end = min(e, size-1)
	}
	return s, end - s + 1, http.StatusPartialContent
}
