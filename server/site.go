// Package server serves ilmweb over HTTP: the static chat site with the model's shards (Site), and an
// OpenAI-compatible chat API on the native engine (API).
package server

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ilmweb/ilmweb/webfiles"
)

// SiteConfig says which directories the static server exposes. Empty fields are not served.
type SiteConfig struct {
	Site  string // the built page (make web: build/web), served at /; while it does not exist, / says so
	Model string // a converted model dir (manifest.json, shards, tokenizer), served at /model/
}

// Site serves static files with the headers a browser engine needs: exact MIME types for wasm and
// modules, gzip where it pays, byte ranges and ETags for resumable shard downloads, immutable caching
// for content-addressed shards and CORS on /model/ so a page on another origin can load the model.
//
// Nothing outside the configured directories is reachable: ".." segments (decoded or not) are refused,
// every file is opened through an os.Root (symlinks leading out fail), dotfiles and directory
// listings are not served. Directories are opened per request, so a rebuilt or late-created directory
// is picked up without a restart.
type Site struct {
	cfg SiteConfig
	gz  gzipCache
}

// NewSite checks cfg and returns the handler. A missing model dir is an error (it was asked for
// explicitly); a missing site or build dir is not, since the page may not be built yet.
func NewSite(cfg SiteConfig) (*Site, error) {
	if cfg.Model != "" {
		st, err := os.Stat(cfg.Model)
		if err != nil {
			return nil, fmt.Errorf("model dir: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("model dir: %s is not a directory", cfg.Model)
		}
	}
	return &Site{cfg: cfg}, nil
}

const modelPrefix = "/model/"

func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p := r.URL.Path
	isModel := p == strings.TrimSuffix(modelPrefix, "/") || strings.HasPrefix(p, modelPrefix)
	if isModel {
		h := w.Header()
		webfiles.SetCORS(h)
		if r.Method == http.MethodOptions { // CORS preflight (a Range request from another origin may need one)
			webfiles.SetPreflight(h)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(p, "/")
	if isModel {
		rest = strings.TrimPrefix(strings.TrimPrefix(p, "/model"), "/")
	}
	name, status := cleanName(rest)
	if status != 0 {
		http.Error(w, fmt.Sprintf("%d %s", status, strings.ToLower(http.StatusText(status))), status)
		return
	}
	root := s.cfg.Site
	if isModel {
		root = s.cfg.Model
	}
	if root != "" && s.serveFrom(w, r, root, name) {
		return
	}
	if !isModel && (name == "" || name == "index.html") && !isDir(s.cfg.Site) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		webfiles.SetPageCSP(w.Header(), "index.html")
		io.WriteString(w, placeholderPage)
		return
	}
	http.NotFound(w, r)
}

const placeholderPage = `<!doctype html>
<meta charset="utf-8">
<title>ilmweb: site not built</title>
<h1>The chat page isn't built yet</h1>
<p>This server found no site directory to serve. Build the page (<code>make web</code>) or point <code>-site</code> at it,
then reload. The model directory, if one was given, is served at <a href="/model/manifest.json">/model/</a>.</p>
`

// cleanName turns the URL path below a mount point into a slash-separated name inside the root, or
// returns the status to refuse it with: 400 for "..", "." and backslashes or NULs (attempts to
// leave the root), 404 for dotfiles and empty segments. "" names the root directory itself.
func cleanName(rest string) (string, int) {
	if rest == "" {
		return "", 0
	}
	dir := strings.HasSuffix(rest, "/")
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for _, seg := range segs {
		switch {
		case seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00"):
			return "", http.StatusBadRequest
		case seg == "" || seg[0] == '.':
			return "", http.StatusNotFound
		}
	}
	name := strings.Join(segs, "/")
	if dir {
		name += "/"
	}
	return name, 0
}

func isDir(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}

// serveFrom serves name from the directory dir and reports whether it found something to serve.
// A directory is served as its index.html, never as a listing.
func (s *Site) serveFrom(w http.ResponseWriter, r *http.Request, dir, name string) bool {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return false
	}
	defer root.Close()
	f, st, ok := openRegular(root, strings.TrimSuffix(name, "/"))
	if !ok {
		return false
	}
	if strings.HasSuffix(name, "/") && !st.IsDir() {
		f.Close()
		return false
	}
	if st.IsDir() {
		f.Close()
		index := path.Join(name, "index.html")
		if f, st, ok = openRegular(root, index); !ok || st.IsDir() {
			if ok {
				f.Close()
			}
			return false
		}
		if name != "" && !strings.HasSuffix(name, "/") { // relative links in the page need the slash
			f.Close()
			target := r.URL.Path + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return true
		}
		name = index
	}
	defer f.Close()
	s.serveFile(w, r, f, st, dir, name)
	return true
}

// openRegular opens name inside root (symlinks may not lead out of it) and stats it; only regular
// files and directories count as found.
func openRegular(root *os.Root, name string) (*os.File, fs.FileInfo, bool) {
	if name == "" {
		name = "."
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, false
	}
	st, err := f.Stat()
	if err != nil || !(st.Mode().IsRegular() || st.IsDir()) {
		f.Close()
		return nil, nil, false
	}
	return f, st, true
}

// compressible lists the extensions worth gzipping; shards are not among them (quantized weights barely
// compress, and their downloads must stay resumable with Range).
var compressible = map[string]bool{
	".html": true, ".js": true, ".mjs": true, ".css": true, ".json": true, ".map": true,
	".wasm": true, ".webmanifest": true, ".svg": true, ".txt": true,
}

// minCompress: below this size gzip's framing costs more than it saves.
const minCompress = 256

func (s *Site) serveFile(w http.ResponseWriter, r *http.Request, f *os.File, st fs.FileInfo, dir, name string) {
	h := w.Header()
	base := path.Base(name)
	ext := strings.ToLower(path.Ext(base))
	if ctype := webfiles.ContentType(base); ctype != "" {
		h.Set("Content-Type", ctype)
	}
	webfiles.SetPageCSP(h, base)
	h.Set("Cache-Control", webfiles.CacheControl(base)) // immutable shards; the rest revalidates with the ETag
	etag := fmt.Sprintf(`"%x-%x`, st.ModTime().UnixNano(), st.Size())
	if compressible[ext] {
		h.Add("Vary", "Accept-Encoding")
		if st.Size() >= minCompress && r.Header.Get("Range") == "" && acceptsGzip(r.Header.Get("Accept-Encoding")) {
			data, err := s.gz.get(dir+"\x00"+name, f, st)
			if err != nil {
				http.Error(w, "500 internal server error", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Encoding", "gzip")
			h.Set("ETag", etag+`-gzip"`) // a different representation needs a different strong ETag
			http.ServeContent(w, r, name, st.ModTime(), bytes.NewReader(data))
			return
		}
	}
	h.Set("ETag", etag+`"`)
	http.ServeContent(w, r, name, st.ModTime(), f) // Range, If-None-Match, If-Range, HEAD
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip, by name or through "*", with q > 0.
func acceptsGzip(header string) bool {
	gzipQ, anyQ := -1.0, -1.0
	for _, part := range strings.Split(header, ",") {
		fields := strings.Split(part, ";")
		q := 1.0
		for _, param := range fields[1:] {
			k, v, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(fields[0])) {
		case "gzip", "x-gzip":
			gzipQ = q
		case "*":
			anyQ = q
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return anyQ > 0
}

// gzipCache keeps compressed copies of served files so a reload does not recompress a large wasm;
// an entry is valid while the file's size and modification time are unchanged.
type gzipCache struct {
	mu      sync.Mutex
	entries map[string]gzipEntry
	total   int
}

type gzipEntry struct {
	mod  time.Time
	size int64
	data []byte
}

// gzipCacheMax bounds the cache; when full it starts over, which is fine for a handful of page assets.
const gzipCacheMax = 256 << 20

func (c *gzipCache) get(key string, f io.Reader, st fs.FileInfo) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && e.mod.Equal(st.ModTime()) && e.size == st.Size() {
		return e.data, nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if _, err := io.Copy(zw, f); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || c.total+len(data) > gzipCacheMax {
		c.entries, c.total = map[string]gzipEntry{}, 0
	}
	if old, ok := c.entries[key]; ok {
		c.total -= len(old.data)
	}
	c.entries[key] = gzipEntry{st.ModTime(), st.Size(), data}
	c.total += len(data)
	return data, nil
}
