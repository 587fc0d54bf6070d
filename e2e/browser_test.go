// Package e2e tests the chat page (web/, built into build/web by `make web`) in headless Chromium, driven
// with chromedp. The site is served in-process by package server, with a model directory the test makes,
// behind a wrapper that logs and can break the model's downloads.
//
// Most tests run the page against a mock engine (testdata/mock_wasm_exec.js, served in place of Go's
// wasm_exec.js), so the download manager, the worker protocol and the page are tested without a model.
// engine_test.go runs the real wasm engine on the tiny model.
//
// Without Chromium (Debian's chromium package) the tests skip, except under CI=true or REQUIRE_BROWSER=1,
// where they fail.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ilmweb/ilmweb/server"
)

const (
	webDir   = "../web"
	builtDir = "../build/web"
)

// mustRun says whether a missing browser or site fails the tests rather than skipping them.
func mustRun() bool {
	ci := strings.ToLower(os.Getenv("CI"))
	return (ci != "" && ci != "0" && ci != "false") || os.Getenv("REQUIRE_BROWSER") == "1"
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if mustRun() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	skipOrFail(t, "no Chromium found: apt-get install chromium (make test does)")
	return ""
}

// siteDir returns build/web after checking that it holds the current web/ files: a stale build would test
// old code.
func siteDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(builtDir, "index.html")); err != nil {
		skipOrFail(t, "the site is not built: run make web (%v)", err)
	}
	site := regexp.MustCompile(`\.(html|js|css|webmanifest|png)$`)
	err := filepath.WalkDir(webDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !site.MatchString(path) || filepath.Base(path) == "sw.js" {
			return err
		}
		rel, _ := filepath.Rel(webDir, path)
		src, _ := os.ReadFile(path)
		built, err := os.ReadFile(filepath.Join(builtDir, rel))
		if err != nil || !bytes.Equal(src, built) {
			return fmt.Errorf("build/web/%s differs from web/%s", rel, rel)
		}
		return nil
	})
	if err != nil {
		skipOrFail(t, "build/web is stale, run make web: %v", err)
	}
	return builtDir
}

// ---- a model directory ----

type fakeModel struct {
	dir    string
	shards []entry
	files  []entry
}

type entry struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// writeFakeModel writes a converted-model directory whose shards are random bytes: all the download
// manager and the mock engine look at are names, sizes and hashes.
func writeFakeModel(t *testing.T, shardSizes ...int) *fakeModel {
	t.Helper()
	m := &fakeModel{dir: t.TempDir()}
	rng := rand.New(rand.NewPCG(1, uint64(len(shardSizes))))
	write := func(name string, data []byte) entry {
		if err := os.WriteFile(filepath.Join(m.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		return entry{name, int64(len(data)), hex.EncodeToString(sum[:])}
	}
	files := map[string][]byte{
		"tokenizer.model":            randomBytes(rng, 20000),
		"tokenizer_config.json":      []byte(`{"add_bos_token": true}`),
		"generation_config.json":     []byte(`{"eos_token_id": [2, 128131]}`),
		"config.json":                []byte(`{"model_type": "internlm3"}`),
		"system-prompt.txt":          []byte("You are a test assistant."),
		"thinking-system-prompt.txt": []byte("Think step by step."),
	}
	for _, name := range []string{"tokenizer.model", "tokenizer_config.json", "generation_config.json", "config.json", "system-prompt.txt", "thinking-system-prompt.txt"} {
		m.files = append(m.files, write(name, files[name]))
	}
	for i, size := range shardSizes {
		data := randomBytes(rng, size)
		sum := sha256.Sum256(data)
		m.shards = append(m.shards, write(fmt.Sprintf("shard-%05d-%s.bin", i, hex.EncodeToString(sum[:])[:16]), data))
	}
	m.rewriteManifest(t, m.shards)
	return m
}

// rewriteManifest writes manifest.json listing m's files and the given shards.
func (m *fakeModel) rewriteManifest(t *testing.T, shards []entry) {
	t.Helper()
	var total int64
	for _, s := range shards {
		total += s.Bytes
	}
	manifest, _ := json.MarshalIndent(map[string]any{
		"format": "ilmweb", "version": 1, "source": "e2e fake model",
		"config": map[string]any{"model_type": "internlm3"},
		"quant":  map[string]any{"scheme": "q4", "group_size": 32, "lm_head": "q4"},
		"files":  m.files, "shards": shards, "tensors": []any{}, "total_bytes": total,
	}, "", " ")
	if err := os.WriteFile(filepath.Join(m.dir, "manifest.json"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// corrupt flips a byte in the middle of a shard on disk and returns a function that restores it.
func (m *fakeModel) corrupt(t *testing.T, shard int) (restore func()) {
	t.Helper()
	path := filepath.Join(m.dir, m.shards[shard].Name)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ---- the test server ----

// testServer serves the built site and a model dir like cmd/serve, plus /test/ (testdata) and, for mock
// tests, the mock engine. Every response under /model/ is logged, and can be throttled, cut or held.
type testServer struct {
	*httptest.Server
	model *fakeModel

	mu       sync.Mutex
	log      []request
	throttle time.Duration            // pause after every 64 KiB of a model file
	cuts     map[string]int64         // file name → cut the next response after this many body bytes
	holds    map[string]chan struct{} // with cuts: wait for this channel to close before cutting
	reached  map[string]chan struct{} // closed when a held response reaches its cut
	// isolated serves every response with COOP and COEP, making the pages and their workers cross-origin
	// isolated: their performance.now() then has a 5 µs resolution instead of 100 µs.
	isolated bool
}

type request struct {
	Name   string
	Range  string
	Status int
	Sent   int64
}

func newTestServer(t *testing.T, m *fakeModel, mock bool) *testServer {
	t.Helper()
	site, err := server.NewSite(server.SiteConfig{Site: siteDir(t), Model: m.dir})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{model: m, cuts: map[string]int64{}, holds: map[string]chan struct{}{}, reached: map[string]chan struct{}{}}
	mux := http.NewServeMux()
	mux.Handle("/model/", s.wrapModel(site))
	mux.Handle("/test/", http.StripPrefix("/test/", http.FileServer(http.Dir("testdata"))))
	if mock {
		mux.HandleFunc("/wasm_exec.js", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFile(w, r, "testdata/mock_wasm_exec.js")
		})
		mux.HandleFunc("/engine.wasm", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/wasm")
			w.Header().Set("Cache-Control", "no-cache")
			w.Write([]byte("\x00asm\x01\x00\x00\x00")) // the empty module
		})
	}
	mux.Handle("/", site)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		isolated := s.isolated
		s.mu.Unlock()
		if isolated {
			w.Header().Set("Cross-Origin-Opener-Policy", "same-origin")
			w.Header().Set("Cross-Origin-Embedder-Policy", "require-corp")
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// cutAfter makes the next response for file name end abruptly after n body bytes.
func (s *testServer) cutAfter(name string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts[name] = n
}

// holdAt makes the next response for name stop after n bytes and wait, holding the connection open, until
// release is called; reached is closed when it gets there.
func (s *testServer) holdAt(name string, n int64) (reached <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts[name] = n
	hold, at := make(chan struct{}), make(chan struct{})
	s.holds[name], s.reached[name] = hold, at
	var once sync.Once
	return at, func() { once.Do(func() { close(hold) }) }
}

// requests returns the logged model requests for name ("" for all).
func (s *testServer) requests(name string) []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []request
	for _, r := range s.log {
		if name == "" || r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

func (s *testServer) wrapModel(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/model/")
		s.mu.Lock()
		rw := &faultWriter{ResponseWriter: w, limit: -1, throttle: s.throttle}
		if n, ok := s.cuts[name]; ok {
			rw.limit, rw.hold, rw.reached = n, s.holds[name], s.reached[name]
			delete(s.cuts, name)
			delete(s.holds, name)
			delete(s.reached, name)
		}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.log = append(s.log, request{Name: name, Range: r.Header.Get("Range"), Status: rw.status, Sent: rw.sent})
			s.mu.Unlock()
		}()
		next.ServeHTTP(rw, r)
	})
}

// faultWriter passes a response through in 64 KiB pieces, optionally pausing between them, and aborts
// the connection (no clean end of the body) once limit body bytes are out.
type faultWriter struct {
	http.ResponseWriter
	status   int
	sent     int64
	limit    int64 // -1: no cut
	throttle time.Duration
	hold     chan struct{}
	reached  chan struct{}
}

func (w *faultWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	written := 0
	for len(p) > 0 {
		if w.limit >= 0 && w.sent >= w.limit {
			http.NewResponseController(w.ResponseWriter).Flush()
			if w.hold != nil {
				close(w.reached)
				<-w.hold
			} else {
				// Chromium may fail a fetch's body stream before handing over the bytes it already received
				// when the connection drops right behind them: give it time to deliver them first.
				time.Sleep(200 * time.Millisecond)
			}
			panic(http.ErrAbortHandler) // net/http closes the connection mid-body
		}
		n := min(len(p), 64<<10)
		if w.limit >= 0 {
			n = min(n, int(w.limit-w.sent))
		}
		m, err := w.ResponseWriter.Write(p[:n])
		w.sent += int64(m)
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
		if w.throttle > 0 {
			http.NewResponseController(w.ResponseWriter).Flush()
			time.Sleep(w.throttle)
		}
	}
	return written, nil
}

// ---- the browser ----

// newBrowser starts headless Chromium with a fresh profile (DESIGN.md's flags) and returns a tab's context,
// which ends after 4 minutes.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return newBrowserFor(t, 4*time.Minute)
}

// newBrowserFor is newBrowser whose context ends after timeout.
func newBrowserFor(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	profile, err := os.MkdirTemp("", "ilmweb-e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.Flag("enable-unsafe-webgpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		// Chromium's helpers may still be writing for a moment after it exits.
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Start the browser now, and pass the page's console and exceptions on to the test log.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		skipOrFail(t, "Chromium did not start: %v", err)
	}
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ConsoleAPICalled) {
			if err != nil {
				return
			}
			var args []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			t.Logf("console.%s: %s", ev.Type, strings.Join(args, " "))
		}
	}()
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			t.Logf("page exception at %s:%d: %s", d.URL, d.LineNumber+1, msg)
		}
	}()
	return ctx
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
}

// eval evaluates a JS expression in the page, awaiting a promise, and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JS condition until it is true; on timeout it fails with what the page shows.
func waitFor(t *testing.T, ctx context.Context, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`Boolean(`+cond+`)`, chromedp.EvalIgnoreExceptions))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ''`))
			t.Fatalf("timed out after %v waiting for %s (err %v); the page shows:\n%s", timeout, cond, err, shown)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jsString quotes s as a JS string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
