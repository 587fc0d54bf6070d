//go:build unix

package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ilmweb/ilmweb/server"
)

// The edge worker (cmd/worker, Go on Cloudflare Workers) under `wrangler dev --local`: workerd with a
// simulated R2 bucket and edge cache, on 127.0.0.1. The built site and the tiny model go into the bucket
// with tools/r2-upload.sh (`wrangler r2 object put --local --persist-to`, the state wrangler dev reads);
// then plain HTTP checks (the same headers as cmd/serve, Range, ETag/304, 404, CORS preflight, the edge
// cache) and the chat page in headless Chromium, loaded from the worker, must give the native engine's
// greedy answer; so must a page on another origin that loads the model from the worker.
//
// Wrangler is the pinned one make installs (.cache/worker-npm, or $WRANGLER). Without it, or Node.js, the
// test skips, except under CI, where it fails.

const wranglerBin = "../.cache/worker-npm/node_modules/.bin/wrangler"

const subPage = "<!doctype html><title>a directory's index</title>\n"

// edgeWorker is a running `wrangler dev` and what was uploaded to it.
type edgeWorker struct {
	URL   string
	site  string // the built site dir uploaded under site/
	model string // the converted model dir uploaded under model/
}

func TestEdgeWorker(t *testing.T) {
	wrangler := os.Getenv("WRANGLER")
	if wrangler == "" {
		wrangler = wranglerBin
	}
	if _, err := exec.LookPath("node"); err != nil {
		skipOrFail(t, "no Node.js for wrangler: apt-get install nodejs npm (make test does)")
	}
	if _, err := os.Stat(wrangler); err != nil {
		skipOrFail(t, "no wrangler at %s: make deps (or make worker) installs it (%v)", wrangler, err)
	}
	if abs, err := filepath.Abs(wrangler); err == nil {
		wrangler = abs
	}
	dir := t.TempDir()
	// A snapshot of build/web: the upload, the checks against cmd/serve and the page must all see the same
	// files, whatever rebuilds build/web meanwhile.
	site := filepath.Join(dir, "site")
	if err := os.CopyFS(site, os.DirFS(siteDir(t))); err != nil {
		t.Fatalf("copying build/web: %v", err)
	}
	config := buildWorker(t, dir)
	modelDir := tinyModel(t)
	state := filepath.Join(dir, "state")

	start := time.Now()
	bucket := wranglerBucket(t)
	r2Upload(t, wrangler, config, state, bucket+"/site", site)
	r2Upload(t, wrangler, config, state, bucket+"/model", modelDir)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := os.WriteFile(filepath.Join(sub, "index.html"), []byte(subPage), 0o644); err != nil {
		t.Fatal(err)
	}
	r2Upload(t, wrangler, config, state, bucket+"/site/sub", sub)
	t.Logf("uploaded the site and the tiny model to the local bucket in %v", time.Since(start).Round(time.Millisecond))

	w := startWrangler(t, wrangler, config, state)
	w.site, w.model = site, modelDir
	ref := httptest.NewServer(siteHandler(t, site, modelDir)) // cmd/serve's handler: the reference for headers
	t.Cleanup(ref.Close)

	// Range first: it reads the shard from R2 before anything puts it into the edge cache.
	t.Run("Range", func(t *testing.T) { testWorkerRange(t, w, ref.URL) })
	t.Run("SameHeadersAsServe", func(t *testing.T) { testWorkerHeaders(t, w, ref.URL) })
	t.Run("ETag304", func(t *testing.T) { testWorkerETag(t, w) })
	t.Run("NotFound", func(t *testing.T) { testWorkerNotFound(t, w) })
	t.Run("CORSPreflight", func(t *testing.T) { testWorkerPreflight(t, w, ref.URL) })
	t.Run("Latency", func(t *testing.T) { logWorkerLatency(t, w) })
	t.Run("Browser", func(t *testing.T) { testWorkerBrowser(t, w) })
}

// buildWorker builds cmd/worker as `make worker` does, into dir/build, and writes dir/wrangler.toml: the
// repository's, pointed at that build. It returns the config's path.
func buildWorker(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "build")
	for _, args := range [][]string{
		{"run", "github.com/syumai/workers/cmd/workers-assets-gen", "-mode=go", "-o", out},
		{"build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(out, "app.wasm"), "./cmd/worker"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		if args[0] == "build" {
			cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	wasm, err := os.ReadFile(filepath.Join(out, "app.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(wasm)
	zw.Close()
	t.Logf("worker app.wasm: %d bytes, %d gzipped (%.0f%% of the Workers free plan's 3 MiB)", len(wasm), gz.Len(), 100*float64(gz.Len())/(3<<20))
	if gz.Len() > 3<<20 {
		t.Errorf("the worker's wasm is %d bytes gzipped, over the free plan's 3 MiB", gz.Len())
	}

	toml, err := os.ReadFile("../wrangler.toml")
	if err != nil {
		t.Fatal(err)
	}
	main := regexp.MustCompile(`(?m)^main\s*=.*$`)
	if !main.Match(toml) {
		t.Fatal("wrangler.toml has no main = line")
	}
	toml = main.ReplaceAll(toml, []byte(fmt.Sprintf("main = %q", filepath.Join(out, "worker.mjs"))))
	config := filepath.Join(dir, "wrangler.toml")
	if err := os.WriteFile(config, toml, 0o644); err != nil {
		t.Fatal(err)
	}
	return config
}

func wranglerBucket(t *testing.T) string {
	toml, err := os.ReadFile("../wrangler.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^bucket_name\s*=\s*"([^"]+)"`).FindSubmatch(toml)
	if m == nil {
		t.Fatal("wrangler.toml names no R2 bucket_name")
	}
	return string(m[1])
}

// wranglerEnv keeps wrangler off the network: no telemetry, no Request.cf download (miniflare skips it
// under NODE_ENV=test and uses its placeholder), no prompts.
func wranglerEnv() []string {
	return append(os.Environ(), "WRANGLER_SEND_METRICS=false", "NODE_ENV=test", "CI=1", "NO_COLOR=1", "FORCE_COLOR=0")
}

// r2Upload puts a directory into the local bucket through tools/r2-upload.sh.
func r2Upload(t *testing.T, wrangler, config, state, dest, dir string) {
	t.Helper()
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../tools/r2-upload.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script, dest, dir, "--local", "--persist-to", state, "-c", config)
	cmd.Dir = filepath.Dir(config) // wrangler leaves a .wrangler/ in its working directory: not in the repository
	cmd.Env = append(wranglerEnv(), "WRANGLER="+wrangler)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tools/r2-upload.sh %s %s: %v\n%s", dest, dir, err, out)
	}
}

// startWrangler runs `wrangler dev --local` on a free port of 127.0.0.1 and waits until the worker answers.
func startWrangler(t *testing.T, wrangler, config, state string) *edgeWorker {
	t.Helper()
	port, inspector := loopbackPort(t), loopbackPort(t)
	logPath := filepath.Join(filepath.Dir(config), "wrangler-dev.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wrangler, "dev", "-c", config, "--local", "--persist-to", state,
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--inspector-port", strconv.Itoa(inspector),
		"--show-interactive-dev-session=false")
	cmd.Dir = filepath.Dir(config)
	cmd.Env = wranglerEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // wrangler starts workerd: stop them together
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wrangler dev: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("wrangler dev's output:\n%s", b)
		}
	})
	w := &edgeWorker{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := http.Get(w.URL + "/model/manifest.json")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return w
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("wrangler dev exited: %v\n%s", cmd.ProcessState, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("the worker did not serve /model/manifest.json within 90 s (last: %v, %v)\n%s", err, statusOf(res), b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func statusOf(res *http.Response) string {
	if res == nil {
		return "no response"
	}
	return res.Status
}

func loopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func siteHandler(t *testing.T, site, model string) http.Handler {
	h, err := server.NewSite(server.SiteConfig{Site: site, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// plainClient is an HTTP client that neither asks for gzip (Go's would, and server.Site would oblige, where
// the worker leaves compression to Cloudflare's edge) nor follows redirects.
var plainClient = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

type rawReply struct {
	Status int
	Header http.Header
	Body   []byte
}

func fetchRaw(t *testing.T, method, url string, header ...string) rawReply {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := plainClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return rawReply{res.StatusCode, res.Header, body}
}

// listFiles lists a directory's files (no dotfiles), relative, slash-separated and sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// shards returns the model's shard names, largest first.
func (w *edgeWorker) shards(t *testing.T) []string {
	var names []string
	for _, f := range listFiles(t, w.model) {
		if strings.HasPrefix(f, "shard-") {
			names = append(names, f)
		}
	}
	if len(names) == 0 {
		t.Fatal("the tiny model has no shards")
	}
	size := func(n string) int64 { st, _ := os.Stat(filepath.Join(w.model, n)); return st.Size() }
	slices.SortFunc(names, func(a, b string) int { return int(size(b) - size(a)) })
	return names
}

// The headers the worker shares with cmd/serve, and whose values must be the same.
var serveHeaders = []string{"Content-Type", "Cache-Control", "Accept-Ranges", "X-Content-Type-Options",
	"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"}

// testWorkerHeaders fetches every uploaded file from the worker and from server.Site: same status, bytes
// and headers (ETags differ in form: R2's MD5 against size and mtime).
func testWorkerHeaders(t *testing.T, w *edgeWorker, ref string) {
	paths := map[string]string{"/": filepath.Join(w.site, "index.html")}
	for _, f := range listFiles(t, w.site) {
		paths["/"+f] = filepath.Join(w.site, f)
	}
	for _, f := range listFiles(t, w.model) {
		paths["/model/"+f] = filepath.Join(w.model, f)
	}
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range paths {
			if !yield(p) {
				return
			}
		}
	}) {
		want, err := os.ReadFile(paths[p])
		if err != nil {
			t.Fatal(err)
		}
		got, exp := fetchRaw(t, "GET", w.URL+p), fetchRaw(t, "GET", ref+p)
		if got.Status != http.StatusOK || !bytes.Equal(got.Body, want) {
			t.Errorf("GET %s: %d with %d bytes, want 200 with the file's %d", p, got.Status, len(got.Body), len(want))
			continue
		}
		// wrangler dev's proxy passes HTML through HTMLRewriter (for its live-reload script), which drops
		// the length; the deployed worker sends it.
		if got.Header.Get("Content-Length") != strconv.Itoa(len(want)) && !strings.HasPrefix(got.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: Content-Length %q, want %d", p, got.Header.Get("Content-Length"), len(want))
		}
		if got.Header.Get("ETag") == "" {
			t.Errorf("GET %s: no ETag", p)
		}
		for _, h := range serveHeaders {
			g, e := got.Header.Get(h), exp.Header.Get(h)
			if h == "Content-Type" && strings.HasSuffix(p, ".woff2") {
				e = "font/woff2" // server.Site takes it from the system's mime.types, if there is one
			}
			if g != e {
				t.Errorf("GET %s: %s %q from the worker, %q from cmd/serve", p, h, g, e)
			}
		}
	}
	t.Logf("%d files: same bytes and headers as cmd/serve", len(paths))
}

// testWorkerRange checks byte ranges of a shard, first read from R2 (the edge cache does not have it yet),
// then from the edge cache, and of manifest.json (always R2), against the file and against server.Site.
func testWorkerRange(t *testing.T, w *edgeWorker, ref string) {
	shard := w.shards(t)[0]
	data, err := os.ReadFile(filepath.Join(w.model, shard))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(data))
	type rangeCase struct {
		header     string
		start, end int64 // inclusive; start < 0: 416
	}
	cases := []rangeCase{
		{"bytes=100-1099", 100, 1099},
		{"bytes=0-0", 0, 0},
		{fmt.Sprintf("bytes=%d-", size-4096), size - 4096, size - 1},
		{"bytes=-777", size - 777, size - 1},
		{fmt.Sprintf("bytes=%d-%d", size-10, size+1000), size - 10, size - 1},
		{fmt.Sprintf("bytes=%d-", size), -1, 0},
		{"bytes=5-2", -1, 0},
	}
	check := func(path string, data []byte, c rangeCase, wantCache string) {
		t.Helper()
		size := int64(len(data))
		got := fetchRaw(t, "GET", w.URL+path, "Range", c.header)
		exp := fetchRaw(t, "GET", ref+path, "Range", c.header)
		if c.start < 0 {
			if got.Status != http.StatusRequestedRangeNotSatisfiable || got.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
				t.Errorf("%s Range %s: %d, Content-Range %q; want 416 with bytes */%d", path, c.header, got.Status, got.Header.Get("Content-Range"), size)
			}
			if exp.Status != got.Status {
				t.Errorf("%s Range %s: %d from the worker, %d from cmd/serve", path, c.header, got.Status, exp.Status)
			}
			return
		}
		wantRange := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, size)
		if got.Status != http.StatusPartialContent || got.Header.Get("Content-Range") != wantRange ||
			!bytes.Equal(got.Body, data[c.start:c.end+1]) || got.Header.Get("Content-Length") != strconv.FormatInt(c.end-c.start+1, 10) {
			t.Errorf("%s Range %s: %d, Content-Range %q, Content-Length %q, %d bytes (right ones: %v); want 206, %s, exactly bytes %d..%d",
				path, c.header, got.Status, got.Header.Get("Content-Range"), got.Header.Get("Content-Length"), len(got.Body),
				c.end-c.start+1 == int64(len(got.Body)) && bytes.Equal(got.Body, data[c.start:min(c.end+1, c.start+int64(len(got.Body)))]),
				wantRange, c.start, c.end)
		}
		if exp.Status != got.Status || exp.Header.Get("Content-Range") != got.Header.Get("Content-Range") || !bytes.Equal(exp.Body, got.Body) {
			t.Errorf("%s Range %s: the worker and cmd/serve differ: %d %q against %d %q", path, c.header,
				got.Status, got.Header.Get("Content-Range"), exp.Status, exp.Header.Get("Content-Range"))
		}
		if wantCache != "" && got.Header.Get("X-Edge-Cache") != wantCache {
			t.Errorf("%s Range %s: X-Edge-Cache %q, want %q", path, c.header, got.Header.Get("X-Edge-Cache"), wantCache)
		}
	}

	path := "/model/" + shard
	for _, c := range cases { // from R2: the shard was never fetched whole, so the edge cache lacks it
		check(path, data, c, "MISS")
	}
	waitEdgeCached(t, w, path, data, true)
	for _, c := range cases { // from the edge cache
		check(path, data, c, "HIT")
	}
	manifest, err := os.ReadFile(filepath.Join(w.model, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []rangeCase{{"bytes=10-99", 10, 99}, {"bytes=-5", int64(len(manifest)) - 5, int64(len(manifest)) - 1},
		{fmt.Sprintf("bytes=%d-", len(manifest)+5), -1, 0}} {
		check("/model/manifest.json", manifest, c, "")
	}

	// A stale If-Range (the object changed) and several ranges get the whole object, which a server may send.
	got := fetchRaw(t, "GET", w.URL+path, "Range", "bytes=0-9", "If-Range", `"0123456789abcdef0123456789abcdef"`)
	if got.Status != http.StatusOK || !bytes.Equal(got.Body, data) {
		t.Errorf("Range with a stale If-Range: %d with %d bytes, want 200 with all %d", got.Status, len(got.Body), size)
	}
	etag := got.Header.Get("ETag")
	got = fetchRaw(t, "GET", w.URL+path, "Range", "bytes=10-19", "If-Range", etag)
	if got.Status != http.StatusPartialContent || !bytes.Equal(got.Body, data[10:20]) {
		t.Errorf("Range with a current If-Range: %d with %d bytes, want 206 with 10", got.Status, len(got.Body))
	}
	got = fetchRaw(t, "GET", w.URL+path, "Range", "bytes=0-9,20-29")
	if got.Status != http.StatusOK || !bytes.Equal(got.Body, data) {
		t.Errorf("two ranges: %d with %d bytes, want 200 with all %d", got.Status, len(got.Body), size)
	}
}

// waitEdgeCached fetches a shard whole (filling the edge cache in the background) and waits until the worker
// answers it from the cache, byte for byte. fresh: the shard was never fetched whole before, so the first
// GET must come from R2.
func waitEdgeCached(t *testing.T, w *edgeWorker, path string, data []byte, fresh bool) {
	t.Helper()
	first := fetchRaw(t, "GET", w.URL+path)
	if first.Status != http.StatusOK || !bytes.Equal(first.Body, data) || first.Header.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("GET %s: %d, %d bytes, Content-Length %q; want 200 and the file's %d", path, first.Status, len(first.Body), first.Header.Get("Content-Length"), len(data))
	}
	if fresh && first.Header.Get("X-Edge-Cache") != "MISS" {
		t.Errorf("first GET of %s: X-Edge-Cache %q, want MISS", path, first.Header.Get("X-Edge-Cache"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := fetchRaw(t, "GET", w.URL+path+"?v=2") // the query is not part of the cache key
		if got.Header.Get("X-Edge-Cache") == "HIT" {
			if got.Status != http.StatusOK || !bytes.Equal(got.Body, data) || got.Header.Get("ETag") != first.Header.Get("ETag") ||
				got.Header.Get("Content-Length") != strconv.Itoa(len(data)) {
				t.Fatalf("GET %s from the edge cache: %d, %d bytes, ETag %q, Content-Length %q; want 200, the file's %d bytes, ETag %q",
					path, got.Status, len(got.Body), got.Header.Get("ETag"), got.Header.Get("Content-Length"), len(data), first.Header.Get("ETag"))
			}
			for _, h := range serveHeaders {
				if got.Header.Get(h) != first.Header.Get(h) {
					t.Errorf("GET %s: %s %q from the edge cache, %q from R2", path, h, got.Header.Get(h), first.Header.Get(h))
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still not answered from the edge cache 10 s after a whole GET (X-Edge-Cache %q)", path, got.Header.Get("X-Edge-Cache"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func testWorkerETag(t *testing.T, w *edgeWorker) {
	shard := w.shards(t)[len(w.shards(t))-1]
	data, _ := os.ReadFile(filepath.Join(w.model, shard))
	for _, p := range []string{"/", "/model/manifest.json", "/engine.wasm", "/model/" + shard} {
		first := fetchRaw(t, "GET", w.URL+p)
		etag := first.Header.Get("ETag")
		if first.Status != http.StatusOK || !strings.HasPrefix(etag, `"`) {
			t.Errorf("GET %s: %d, ETag %q; want 200 and a strong ETag", p, first.Status, etag)
			continue
		}
		for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
			got := fetchRaw(t, "GET", w.URL+p, "If-None-Match", inm)
			if got.Status != http.StatusNotModified || len(got.Body) != 0 || got.Header.Get("ETag") != etag ||
				got.Header.Get("Cache-Control") != first.Header.Get("Cache-Control") {
				t.Errorf("GET %s If-None-Match %s: %d, %d bytes, ETag %q, Cache-Control %q; want 304, no body, ETag %s, %q",
					p, inm, got.Status, len(got.Body), got.Header.Get("ETag"), got.Header.Get("Cache-Control"), etag, first.Header.Get("Cache-Control"))
			}
		}
		got := fetchRaw(t, "GET", w.URL+p, "If-None-Match", `"something-else"`)
		if got.Status != http.StatusOK || !bytes.Equal(got.Body, first.Body) {
			t.Errorf("GET %s with a stale If-None-Match: %d, want 200 and the whole body", p, got.Status)
		}
		got = fetchRaw(t, "HEAD", w.URL+p)
		if got.Status != http.StatusOK || got.Header.Get("Content-Length") != strconv.Itoa(len(first.Body)) || got.Header.Get("ETag") != etag || len(got.Body) != 0 {
			t.Errorf("HEAD %s: %d, Content-Length %q, ETag %q; want 200, %d, %s", p, got.Status, got.Header.Get("Content-Length"), got.Header.Get("ETag"), len(first.Body), etag)
		}
		if lm := first.Header.Get("Last-Modified"); lm != "" {
			if got := fetchRaw(t, "GET", w.URL+p, "If-Modified-Since", lm); got.Status != http.StatusNotModified {
				t.Errorf("GET %s If-Modified-Since its Last-Modified: %d, want 304", p, got.Status)
			}
		}
	}
	// The shard's 304 also comes from the edge cache once it is there.
	path := "/model/" + shard
	waitEdgeCached(t, w, path, data, false)
	etag := fetchRaw(t, "HEAD", w.URL+path).Header.Get("ETag")
	got := fetchRaw(t, "GET", w.URL+path, "If-None-Match", etag)
	if got.Status != http.StatusNotModified || got.Header.Get("X-Edge-Cache") != "HIT" {
		t.Errorf("GET %s If-None-Match from the edge cache: %d, X-Edge-Cache %q; want 304, HIT", path, got.Status, got.Header.Get("X-Edge-Cache"))
	}
	if cc := got.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("GET %s 304 from the edge cache: Cache-Control %q", path, cc)
	}
}

func testWorkerNotFound(t *testing.T, w *edgeWorker) {
	for _, c := range []struct {
		path   string
		method string
		status int
	}{
		{"/model/missing.json", "GET", 404},
		{"/model/shard-00099-0123456789abcdef.bin", "GET", 404}, // a shard name: the edge cache, then R2
		{"/model/shard-00099-0123456789abcdef.bin", "HEAD", 404},
		{"/missing.html", "GET", 404},
		{"/vendor/nope/", "GET", 404},
		{"/.git/config", "GET", 404},
		{"/model/", "GET", 404},
		{"/model/manifest.json", "POST", 405},
		{"/index.html", "DELETE", 405},
	} {
		got := fetchRaw(t, c.method, w.URL+c.path)
		if got.Status != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got.Status, c.status)
		}
		if c.status == 404 && c.method == "GET" && string(got.Body) != "404 page not found\n" {
			t.Errorf("%s %s: body %q", c.method, c.path, got.Body)
		}
		if strings.HasPrefix(c.path, "/model/") && got.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: no CORS on a model path's %d: another origin could not read why", c.method, c.path, got.Status)
		}
		if c.status == 405 && got.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", c.method, c.path, got.Header.Get("Allow"))
		}
	}
	// A directory is served as its index.html; without its slash it is redirected to it, as cmd/serve does
	// (sub/ is an extra page the test uploads).
	if got := fetchRaw(t, "GET", w.URL+"/sub?x=1"); got.Status != http.StatusMovedPermanently || got.Header.Get("Location") != "/sub/?x=1" {
		t.Errorf("GET /sub?x=1: %d, Location %q; want 301 to /sub/?x=1", got.Status, got.Header.Get("Location"))
	}
	if got := fetchRaw(t, "GET", w.URL+"/sub/"); got.Status != http.StatusOK || string(got.Body) != subPage {
		t.Errorf("GET /sub/: %d %q", got.Status, got.Body)
	}
	if got := fetchRaw(t, "GET", w.URL+"/vendor/katex"); got.Status != http.StatusNotFound {
		t.Errorf("GET /vendor/katex (a directory without index.html): %d, want 404", got.Status)
	}
}

func testWorkerPreflight(t *testing.T, w *edgeWorker, ref string) {
	shard := "/model/" + w.shards(t)[0]
	ask := []string{"Origin", "http://elsewhere.test", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "range, if-none-match"}
	got, exp := fetchRaw(t, "OPTIONS", w.URL+shard, ask...), fetchRaw(t, "OPTIONS", ref+shard, ask...)
	if got.Status != http.StatusNoContent {
		t.Errorf("preflight: %d, want 204", got.Status)
	}
	for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Expose-Headers"} {
		if got.Header.Get(h) == "" || got.Header.Get(h) != exp.Header.Get(h) {
			t.Errorf("preflight: %s %q from the worker, %q from cmd/serve", h, got.Header.Get(h), exp.Header.Get(h))
		}
	}
	allowed := strings.ToLower(got.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"range", "if-none-match"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("preflight: %s is not among the allowed headers %q", h, allowed)
		}
	}
	// The actual cross-origin request then carries CORS headers too.
	res := fetchRaw(t, "GET", w.URL+shard, "Origin", "http://elsewhere.test", "Range", "bytes=0-15")
	if res.Status != http.StatusPartialContent || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Content-Range") {
		t.Errorf("cross-origin ranged GET: %d, Allow-Origin %q, Expose-Headers %q", res.Status,
			res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Access-Control-Expose-Headers"))
	}
	// The site is not a CORS resource, as with cmd/serve: no preflight there.
	if got, exp := fetchRaw(t, "OPTIONS", w.URL+"/index.html", ask...), fetchRaw(t, "OPTIONS", ref+"/index.html", ask...); got.Status != exp.Status {
		t.Errorf("OPTIONS /index.html: %d from the worker, %d from cmd/serve", got.Status, exp.Status)
	}
}

// logWorkerLatency logs request times through wrangler dev (workerd, a fresh Go instance per request) for
// docs/BENCHMARKS.md; it checks nothing.
func logWorkerLatency(t *testing.T, w *edgeWorker) {
	timeIt := func(n int, f func()) (p50, p90 time.Duration) {
		var ds []time.Duration
		for range n {
			start := time.Now()
			f()
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[n/2], ds[n*9/10]
	}
	p50, p90 := timeIt(30, func() { fetchRaw(t, "GET", w.URL+"/model/manifest.json") })
	t.Logf("GET manifest.json (R2 get): p50 %v, p90 %v", p50.Round(time.Microsecond*100), p90.Round(time.Microsecond*100))
	p50, p90 = timeIt(30, func() { fetchRaw(t, "GET", w.URL+"/model/manifest.json", "If-None-Match", `"x"`) })
	t.Logf("GET manifest.json, conditional (R2 head + get): p50 %v, p90 %v", p50.Round(time.Microsecond*100), p90.Round(time.Microsecond*100))
	shard := w.shards(t)[0]
	st, _ := os.Stat(filepath.Join(w.model, shard))
	p50, p90 = timeIt(20, func() { fetchRaw(t, "GET", w.URL+"/model/"+shard) })
	t.Logf("GET %s (%d bytes, edge cache hit): p50 %v, p90 %v", shard, st.Size(), p50.Round(time.Microsecond*100), p90.Round(time.Microsecond*100))
	p50, p90 = timeIt(20, func() { fetchRaw(t, "GET", w.URL+"/model/"+shard, "Range", "bytes=1000-") })
	t.Logf("GET %s bytes=1000- (edge cache hit, ranged): p50 %v, p90 %v", shard, p50.Round(time.Microsecond*100), p90.Round(time.Microsecond*100))
	p50, p90 = timeIt(30, func() { fetchRaw(t, "OPTIONS", w.URL+"/model/manifest.json") })
	t.Logf("OPTIONS (no R2): p50 %v, p90 %v", p50.Round(time.Microsecond*100), p90.Round(time.Microsecond*100))
}

// testWorkerBrowser opens the chat page from the worker with the model there too (same origin), and then
// a page on another origin (cmd/serve's handler) that loads the model from the worker: both must give the
// native engine's greedy answer.
func testWorkerBrowser(t *testing.T, w *edgeWorker) {
	if st, err := os.Stat(filepath.Join(w.site, "engine.wasm")); err != nil || st.Size() < 1<<20 {
		skipOrFail(t, "build/web has no real engine.wasm: run make web")
	}
	chromiumPath(t)
	native := strings.TrimSuffix(goRun(t, "./cmd/chat", "-model", w.model, "-prompt", prompt, "-temperature", "0", "-max-tokens", "24"), "\n")
	ctx := newBrowser(t)

	// Same origin: the page, engine.wasm and the model all from the worker. The settings go into
	// localStorage from a page of the origin that is not the app: loading the app, leaving it at once and
	// loading it again was seen to stall the second load before it started its worker (the first one kept
	// by the back/forward cache mid-start, holding IndexedDB, is the likely cause).
	navigate(t, ctx, w.URL+"/model/manifest.json")
	eval[bool](t, ctx, `(localStorage.setItem('ilmweb.settings', JSON.stringify({temperature: 0, max_tokens: 24})), true)`)
	start := time.Now()
	navigate(t, ctx, w.URL+"/?backend=cpu")
	waitReady(t, ctx)
	loaded := time.Since(start)
	ask(t, ctx, prompt)
	msgs := storedMessages(t, ctx)
	if len(msgs) != 2 || msgs[1].Stats == nil || msgs[1].Stats.Error != "" {
		t.Fatalf("after the first turn the conversation is %+v", msgs)
	}
	if msgs[1].Content != native {
		t.Errorf("greedy answer on the page from the worker %q, natively %q", msgs[1].Content, native)
	}
	t.Logf("page and tiny model from the worker: engine ready in %v", loaded.Round(time.Millisecond))

	// Another origin: a page served by cmd/serve's handler loads the model from the worker (CORS, and a
	// preflight for its Range requests if it makes any).
	s := newTestServer(t, &fakeModel{dir: w.model}, false)
	navigate(t, ctx, s.URL+"/test/harness.html")
	waitFor(t, ctx, `window.harnessReady`, 10*time.Second)
	r := eval[loadResult](t, ctx, `load({model: `+jsString(w.URL+"/model/")+`, backend: 'cpu'})`)
	if !r.OK {
		t.Fatalf("loading the model from the worker on another origin: %s: %s", r.Type, r.Message)
	}
	got := eval[string](t, ctx, `chat([{role: 'user', content: `+jsString(prompt)+`}], {temperature: 0, max_tokens: 24})
		.then((chunks) => chunks.map((c) => c.choices[0].delta.content ?? '').join(''))`)
	if got != native {
		t.Errorf("greedy answer with the model from the worker on another origin %q, natively %q", got, native)
	}
	if n := len(s.requests("")); n != 0 {
		t.Errorf("the page's own server got %d model requests; the model should have come from the worker", n)
	}
}
