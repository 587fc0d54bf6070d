package worker

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilmweb/ilmweb/server"

	"github.com/ilmweb/ilmweb/webfiles"
)

func TestResolve(t *testing.T) {
	for _, c := range []struct {
		path   string
		key    string
		model  bool
		status int
	}{
		{"/", "site/index.html", false, 0},
		{"/index.html", "site/index.html", false, 0},
		{"/engine.wasm", "site/engine.wasm", false, 0},
		{"/vendor/katex/katex.min.css", "site/vendor/katex/katex.min.css", false, 0},
		{"/docs/", "site/docs/index.html", false, 0},
		{"/model", "model/index.html", true, 0},
		{"/model/", "model/index.html", true, 0},
		{"/model/manifest.json", "model/manifest.json", true, 0},
		{"/model/8b/shard-00001-0123456789abcdef.bin", "model/8b/shard-00001-0123456789abcdef.bin", true, 0},
		{"/models.json", "site/models.json", false, 0},
		{"/../secret", "", false, 400},
		{"/model/../site/index.html", "", true, 400},
		{"/a/./b", "", false, 400},
		{"/a\\b", "", false, 400},
		{"/a\x00b", "", false, 400},
		{"/.git/config", "", false, 404},
		{"/model/.env", "", true, 404},
		{"/a//b", "", false, 404},
	} {
		key, model, status := Resolve(c.path)
		if key != c.key || model != c.model || status != c.status {
			t.Errorf("Resolve(%q) = %q, %v, %d; want %q, %v, %d", c.path, key, model, status, c.key, c.model, c.status)
		}
	}
}

// TestHeadersMatchServer serves one file of each known extension, and a shard, with package server and
// checks that the worker would send the same Content-Type and Cache-Control.
func TestHeadersMatchServer(t *testing.T) {
	site, model := t.TempDir(), t.TempDir()
	names := []string{"shard-00000-0123456789abcdef.bin", "manifest.json", "tokenizer.model", "system-prompt.txt"}
	for _, n := range names {
		os.WriteFile(filepath.Join(model, n), []byte("model file "+n), 0o644)
	}
	var siteNames []string
	for _, ext := range []string{".html", ".js", ".mjs", ".css", ".json", ".wasm", ".webmanifest", ".svg", ".png", ".woff2", ".model", ".bin"} {
		n := "file" + ext
		siteNames = append(siteNames, n)
		os.WriteFile(filepath.Join(site, n), []byte("x"), 0o644)
	}
	siteNames = append(siteNames, "shard-00003-fedcba9876543210.bin")
	os.WriteFile(filepath.Join(site, siteNames[len(siteNames)-1]), []byte("x"), 0o644)
	h, err := server.NewSite(server.SiteConfig{Site: site, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	check := func(urlPath string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", urlPath, nil))
		if rec.Code != 200 {
			t.Fatalf("server: GET %s: %d", urlPath, rec.Code)
		}
		key, model, _ := Resolve(urlPath)
		out := http.Header{}
		if model {
			webfiles.SetCORS(out)
		}
		Decide("GET", http.Header{}, key, Meta{Size: int64(rec.Body.Len()), ETag: `"e"`}, out)
		for _, k := range []string{"Content-Type", "Cache-Control", "Content-Security-Policy", "Accept-Ranges", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers"} {
			if got, want := out.Get(k), rec.Header().Get(k); got != want {
				t.Errorf("GET %s: %s %q, server sends %q", urlPath, k, got, want)
			}
		}
	}
	for _, n := range siteNames {
		check("/" + n)
	}
	for _, n := range names {
		check("/model/" + n)
	}
}

// TestDecideMatchesServeContent puts Decide and net/http's ServeContent (what cmd/serve answers with)
// through the same conditional and range requests.
func TestDecideMatchesServeContent(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	size := int64(len(data))
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	etag := `"abc"`
	m := Meta{Size: size, ETag: etag, Modified: mod}
	modText := mod.Format(http.TimeFormat)
	for _, hdr := range [][]string{
		{},
		{"Range", "bytes=0-99"},
		{"Range", "bytes=990-"},
		{"Range", "bytes=-10"},
		{"Range", "bytes=-2000"},
		{"Range", "bytes=995-2000"},
		{"Range", "bytes=1000-"},
		{"Range", "bytes=5-2"},
		{"Range", "items=0-5"},
		{"Range", "bytes=abc"},
		{"If-None-Match", etag},
		{"If-None-Match", "W/" + etag},
		{"If-None-Match", `"x", ` + etag},
		{"If-None-Match", `"x"`},
		{"If-None-Match", "*"},
		{"If-Modified-Since", modText},
		{"If-Modified-Since", mod.Add(-time.Hour).Format(http.TimeFormat)},
		{"If-None-Match", `"x"`, "If-Modified-Since", modText},
		{"Range", "bytes=10-19", "If-Range", etag},
		{"Range", "bytes=10-19", "If-Range", `"old"`},
		{"Range", "bytes=10-19", "If-Range", modText},
		{"Range", "bytes=10-19", "If-Range", mod.Add(-time.Hour).Format(http.TimeFormat)},
		{"Range", "bytes=10-19", "If-None-Match", etag},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			name := fmt.Sprintf("%s %v", method, hdr)
			req := httptest.NewRequest(method, "/model/x.bin", nil)
			for i := 0; i < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			rec := httptest.NewRecorder()
			rec.Header().Set("ETag", etag)
			http.ServeContent(rec, req, "x.bin", mod, bytes.NewReader(data))

			out := http.Header{}
			r := Decide(method, req.Header, "model/x.bin", m, out)
			if r.Status != rec.Code {
				t.Errorf("%s: status %d, ServeContent %d", name, r.Status, rec.Code)
				continue
			}
			for _, k := range []string{"Content-Range", "Content-Length", "ETag"} {
				if got, want := out.Get(k), rec.Header().Get(k); got != want && !(k == "Content-Range" && r.Status == 416 && want == "") {
					t.Errorf("%s: %s %q, ServeContent %q", name, k, got, want)
				}
			}
			if r.Status == http.StatusOK || r.Status == http.StatusPartialContent {
				if method == "GET" {
					if body := data[r.Offset : r.Offset+r.Length]; !bytes.Equal(body, rec.Body.Bytes()) {
						t.Errorf("%s: bytes %d+%d differ from ServeContent's %d", name, r.Offset, r.Length, rec.Body.Len())
					}
				}
				if r.Body != (method == "GET") {
					t.Errorf("%s: Body %v", name, r.Body)
				}
			} else if r.Body {
				t.Errorf("%s: a %d with a body", name, r.Status)
			}
		}
	}
}

// A zero-length suffix range is unsatisfiable (RFC 9110 14.1.3); ServeContent answers 206 with "bytes 1000-999/1000".
func TestDecideEmptySuffix(t *testing.T) {
	out := http.Header{}
	if r := Decide("GET", http.Header{"Range": {"bytes=-0"}}, "model/x.bin", Meta{Size: 1000}, out); r.Status != 416 || out.Get("Content-Range") != "bytes */1000" {
		t.Errorf("bytes=-0: %+v, %v", r, out)
	}
}

// Several ranges: ServeContent sends multipart/byteranges, the worker the whole object (R2 reads one range).
func TestDecideSeveralRanges(t *testing.T) {
	out := http.Header{}
	r := Decide("GET", http.Header{"Range": {"bytes=0-1,5-6"}}, "model/x.bin", Meta{Size: 100, ETag: `"e"`}, out)
	if r.Status != 200 || r.Offset != 0 || r.Length != 100 || out.Get("Content-Length") != strconv.Itoa(100) || out.Get("Content-Range") != "" {
		t.Errorf("two ranges: %+v, %v", r, out)
	}
	if !strings.Contains(out.Get("Accept-Ranges"), "bytes") {
		t.Errorf("Accept-Ranges %q", out.Get("Accept-Ranges"))
	}
}
