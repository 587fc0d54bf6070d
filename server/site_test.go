package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const shard = "shard-00000-0123456789abcdef.bin"

type siteFixture struct {
	site  *Site
	files map[string][]byte // URL path → content
}

// newSiteFixture lays out a site, a build dir and a model dir, plus a secret beside them that must stay
// unreachable.
func newSiteFixture(t *testing.T) *siteFixture {
	root := t.TempDir()
	text := func(s string) []byte { return []byte(strings.Repeat(s, 64)) }
	rng := rand.New(rand.NewPCG(1, 2))
	shardBytes := make([]byte, 10240)
	for i := range shardBytes {
		shardBytes[i] = byte(rng.Uint32())
	}
	fx := &siteFixture{files: map[string][]byte{}}
	write := func(dir, name, urlPath string, data []byte) {
		p := filepath.Join(root, dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
		if urlPath != "" {
			fx.files[urlPath] = data
		}
	}
	write("web", "index.html", "/", text("<p>chat page</p>\n"))
	write("web", "app.js", "/app.js", text("console.log('hi');\n"))
	write("web", "lib.mjs", "/lib.mjs", text("export const x = 1;\n"))
	write("web", "style.css", "/style.css", text("body { color: red; }\n"))
	write("web", "sw.js", "/sw.js", text("self.addEventListener('fetch', () => {});\n"))
	write("web", "app.webmanifest", "/app.webmanifest", text(`{"name": "ilmweb"}`))
	write("web", "tiny.js", "/tiny.js", []byte("1;\n"))
	write("web", "docs/index.html", "/docs/", text("<p>docs</p>\n"))
	write("web", ".secret", "", []byte("web dotfile"))
	write("web", ".git/config", "", []byte("[core]"))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "web", "empty"), 0o755))
	write("web", "ilmweb.wasm", "/ilmweb.wasm", append([]byte("\x00asm\x01\x00\x00\x00"), text("wasm code ")...))
	write("web", "wasm_exec.js", "/wasm_exec.js", text("// go wasm glue\n"))
	write("model", "manifest.json", "/model/manifest.json", text(`{"tensor": "x"},`))
	write("model", shard, "/model/"+shard, shardBytes)
	write("model", "tokenizer.model", "/model/tokenizer.model", shardBytes[:1000])
	write("model", ".hidden", "", []byte("model dotfile"))
	write("outside", "secret.txt", "", []byte("secret"))
	require.NoError(t, os.Symlink("../outside/secret.txt", filepath.Join(root, "model", "leak.bin")))
	require.NoError(t, os.Symlink(filepath.Join(root, "outside", "secret.txt"), filepath.Join(root, "model", "abs.bin")))
	require.NoError(t, os.Symlink("../outside", filepath.Join(root, "model", "out")))
	require.NoError(t, os.Symlink("manifest.json", filepath.Join(root, "model", "alias.json")))

	site, err := NewSite(SiteConfig{Site: filepath.Join(root, "web"), Model: filepath.Join(root, "model")})
	require.NoError(t, err)
	fx.site = site
	return fx
}

func (fx *siteFixture) get(target string, header ...string) *httptest.ResponseRecorder {
	return fx.do(http.MethodGet, target, header...)
}

func (fx *siteFixture) do(method, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	fx.site.ServeHTTP(w, r)
	return w
}

func TestSiteContentTypes(t *testing.T) {
	fx := newSiteFixture(t)
	for path, want := range map[string]string{
		"/":                      "text/html; charset=utf-8",
		"/app.js":                "text/javascript; charset=utf-8",
		"/lib.mjs":               "text/javascript; charset=utf-8",
		"/style.css":             "text/css; charset=utf-8",
		"/app.webmanifest":       "application/manifest+json",
		"/ilmweb.wasm":           "application/wasm",
		"/wasm_exec.js":          "text/javascript; charset=utf-8",
		"/model/manifest.json":   "application/json",
		"/model/" + shard:        "application/octet-stream",
		"/model/tokenizer.model": "application/octet-stream",
	} {
		w := fx.get(path)
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Equal(t, want, w.Header().Get("Content-Type"), path)
		require.Equal(t, fx.files[path], w.Body.Bytes(), path)
		require.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"), path)
	}
}

func TestSiteGzip(t *testing.T) {
	fx := newSiteFixture(t)
	for _, path := range []string{"/", "/app.js", "/style.css", "/ilmweb.wasm", "/model/manifest.json", "/app.webmanifest"} {
		w := fx.get(path, "Accept-Encoding", "br, gzip;q=0.8, deflate")
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Equal(t, "gzip", w.Header().Get("Content-Encoding"), path)
		require.Contains(t, w.Header().Values("Vary"), "Accept-Encoding", path)
		require.Less(t, w.Body.Len(), len(fx.files[path]), path)
		zr, err := gzip.NewReader(w.Body)
		require.NoError(t, err, path)
		got, err := io.ReadAll(zr)
		require.NoError(t, err, path)
		require.Equal(t, fx.files[path], got, path)
	}
	plain := func(path string, header ...string) {
		w := fx.get(path, header...)
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Empty(t, w.Header().Get("Content-Encoding"), "%s %v", path, header)
		require.Equal(t, fx.files[path], w.Body.Bytes(), path)
	}
	plain("/model/"+shard, "Accept-Encoding", "gzip")          // shards are never compressed
	plain("/model/tokenizer.model", "Accept-Encoding", "gzip") // nor other binaries
	plain("/app.js")                                           // the client did not ask
	plain("/app.js", "Accept-Encoding", "gzip;q=0, identity")  // the client refused
	plain("/tiny.js", "Accept-Encoding", "gzip")               // too small to gain
	require.True(t, acceptsGzip("*"))
	require.False(t, acceptsGzip("*, gzip;q=0"))
	require.False(t, acceptsGzip("br"))
}

func TestSiteRange(t *testing.T) {
	fx := newSiteFixture(t)
	data := fx.files["/model/"+shard]
	w := fx.get("/model/"+shard, "Range", "bytes=100-199")
	require.Equal(t, http.StatusPartialContent, w.Code)
	require.Equal(t, data[100:200], w.Body.Bytes())
	require.Equal(t, "bytes 100-199/10240", w.Header().Get("Content-Range"))
	require.Equal(t, "bytes", w.Header().Get("Accept-Ranges"))

	w = fx.get("/model/"+shard, "Range", "bytes=10000-")
	require.Equal(t, http.StatusPartialContent, w.Code)
	require.Equal(t, data[10000:], w.Body.Bytes())

	w = fx.get("/model/"+shard, "Range", "bytes=20000-")
	require.Equal(t, http.StatusRequestedRangeNotSatisfiable, w.Code)

	// A range of a compressible file is served from the identity bytes, never gzipped.
	js := fx.files["/app.js"]
	w = fx.get("/app.js", "Range", "bytes=5-9", "Accept-Encoding", "gzip")
	require.Equal(t, http.StatusPartialContent, w.Code)
	require.Empty(t, w.Header().Get("Content-Encoding"))
	require.Equal(t, js[5:10], w.Body.Bytes())

	// If-Range with the current ETag resumes; with a stale one the whole file comes.
	etag := fx.get("/model/" + shard).Header().Get("ETag")
	w = fx.get("/model/"+shard, "Range", "bytes=0-9", "If-Range", etag)
	require.Equal(t, http.StatusPartialContent, w.Code)
	w = fx.get("/model/"+shard, "Range", "bytes=0-9", "If-Range", `"stale"`)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, data, w.Body.Bytes())
}

func TestSiteETagAndCaching(t *testing.T) {
	fx := newSiteFixture(t)
	for _, c := range []struct {
		path, cache string
		header      []string
	}{
		{"/model/" + shard, "public, max-age=31536000, immutable", nil},
		{"/model/manifest.json", "no-cache", nil},
		{"/model/manifest.json", "no-cache", []string{"Accept-Encoding", "gzip"}},
		{"/", "no-cache", nil},
		{"/sw.js", "no-cache", nil},
		{"/ilmweb.wasm", "no-cache", []string{"Accept-Encoding", "gzip"}},
	} {
		w := fx.get(c.path, c.header...)
		require.Equal(t, http.StatusOK, w.Code, c.path)
		require.Equal(t, c.cache, w.Header().Get("Cache-Control"), c.path)
		etag := w.Header().Get("ETag")
		require.NotEmpty(t, etag, c.path)
		w = fx.get(c.path, append([]string{"If-None-Match", etag}, c.header...)...)
		require.Equal(t, http.StatusNotModified, w.Code, c.path)
		require.Empty(t, w.Body.Bytes())
		w = fx.get(c.path, append([]string{"If-None-Match", `"other"`}, c.header...)...)
		require.Equal(t, http.StatusOK, w.Code, c.path)
	}
	// The gzip representation has its own ETag.
	require.NotEqual(t, fx.get("/app.js").Header().Get("ETag"), fx.get("/app.js", "Accept-Encoding", "gzip").Header().Get("ETag"))
	// Only content-addressed names are immutable.
	require.Equal(t, "no-cache", fx.get("/model/tokenizer.model").Header().Get("Cache-Control"))
}

func TestSiteNoListingsNoEscapes(t *testing.T) {
	fx := newSiteFixture(t)
	for target, want := range map[string]int{
		"/model/":                             http.StatusNotFound, // no listing
		"/model":                              http.StatusNotFound,
		"/empty/":                             http.StatusNotFound,
		"/empty":                              http.StatusNotFound,
		"/nope.js":                            http.StatusNotFound,
		"/.secret":                            http.StatusNotFound, // dotfiles
		"/.git/config":                        http.StatusNotFound,
		"/model/.hidden":                      http.StatusNotFound,
		"/model/leak.bin":                     http.StatusNotFound, // symlinks out of the root
		"/model/abs.bin":                      http.StatusNotFound,
		"/model/out/secret.txt":               http.StatusNotFound,
		"/../outside/secret.txt":              http.StatusBadRequest,
		"/model/../outside/secret.txt":        http.StatusBadRequest,
		"/model/%2e%2e/outside/secret.txt":    http.StatusBadRequest,
		"/model/%2E%2E%2Foutside/secret.txt":  http.StatusBadRequest,
		"/model/..%2f..%2foutside/secret.txt": http.StatusBadRequest,
		"/model/..%5coutside%5csecret.txt":    http.StatusBadRequest,
		"/model/./manifest.json":              http.StatusBadRequest,
		"/model//manifest.json":               http.StatusNotFound,
		"/model/manifest.json%00":             http.StatusBadRequest,
	} {
		w := fx.get(target)
		require.Equal(t, want, w.Code, target)
		require.NotContains(t, w.Body.String(), "secret", target)
	}
	// A symlink staying inside the root is fine; a directory with an index is served with its slash.
	require.Equal(t, fx.files["/model/manifest.json"], fx.get("/model/alias.json").Body.Bytes())
	require.Equal(t, fx.files["/docs/"], fx.get("/docs/").Body.Bytes())
	w := fx.get("/docs?x=1")
	require.Equal(t, http.StatusMovedPermanently, w.Code)
	require.Equal(t, "/docs/?x=1", w.Header().Get("Location"))

	// Over a real connection too: nothing between the socket and the handler may clean the path first.
	srv := httptest.NewServer(fx.site)
	defer srv.Close()
	for _, target := range []string{"/model/../outside/secret.txt", "/model/%2e%2e/outside/secret.txt", "/../../etc/passwd", "/model/..%2F..%2Foutside/secret.txt"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, resp.StatusCode, target)
		require.NotContains(t, string(body), "secret", target)
	}
}

func TestSiteMethodsCORSAndHEAD(t *testing.T) {
	fx := newSiteFixture(t)
	w := fx.do(http.MethodPost, "/app.js")
	require.Equal(t, http.StatusMethodNotAllowed, w.Code)
	require.Equal(t, "GET, HEAD", w.Header().Get("Allow"))

	w = fx.do(http.MethodHead, "/model/"+shard)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "10240", w.Header().Get("Content-Length"))
	require.Empty(t, w.Body.Bytes())

	w = fx.get("/model/" + shard)
	require.Equal(t, "*", w.Header().Get("Access-Control-Allow-Origin"))
	require.Contains(t, w.Header().Get("Access-Control-Expose-Headers"), "Content-Range")
	require.Equal(t, "*", fx.get("/model/nope").Header().Get("Access-Control-Allow-Origin"))
	require.Empty(t, fx.get("/app.js").Header().Get("Access-Control-Allow-Origin"), "only the model is shared across origins")

	w = fx.do(http.MethodOptions, "/model/"+shard, "Origin", "https://example.com", "Access-Control-Request-Method", "GET",
		"Access-Control-Request-Headers", "range")
	require.Equal(t, http.StatusNoContent, w.Code)
	require.Equal(t, "*", w.Header().Get("Access-Control-Allow-Origin"))
	require.Contains(t, w.Header().Get("Access-Control-Allow-Headers"), "Range")
}

func TestSitePlaceholder(t *testing.T) {
	root := t.TempDir()
	site, err := NewSite(SiteConfig{Site: filepath.Join(root, "web")})
	require.NoError(t, err)
	get := func(p string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		site.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
		return w
	}
	w := get("/")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "isn't built")
	require.Equal(t, "no-cache", w.Header().Get("Cache-Control"))
	require.Equal(t, http.StatusNotFound, get("/app.js").Code)
	require.Equal(t, http.StatusNotFound, get("/model/manifest.json").Code, "no model dir given")

	// The site appears later (built while the server runs): it is served without a restart.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "web"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "web", "index.html"), []byte("<p>real page</p>"), 0o644))
	require.True(t, bytes.Contains(get("/").Body.Bytes(), []byte("real page")))

	_, err = NewSite(SiteConfig{Model: filepath.Join(root, "missing")})
	require.Error(t, err)
}
