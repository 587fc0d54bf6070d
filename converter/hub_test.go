package converter

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	hubTestRepo   = "internlm/tiny-fake"
	hubTestShard1 = "model-00001-of-00002.safetensors"
	hubTestShard2 = "model-00002-of-00002.safetensors"
)

// fakeHub serves {repo}/resolve/{rev}/{file} the way huggingface.co does:
// plain files answer HEAD with Content-Length and a git-sha1 ETag; LFS files
// carry X-Linked-Size / X-Linked-Etag (sha256) and, with a CDN, redirect there.
type fakeHub struct {
	t     *testing.T
	repo  string
	rev   string
	files map[string][]byte
	lfs   map[string]bool

	token       string           // if set, required as "Bearer <token>"
	cdn         *httptest.Server // if set, LFS files redirect (302) there
	badSHA      map[string]bool  // advertise a wrong sha256
	dropFirst   map[string]int   // first GET: send this many bytes, then kill the connection
	stallFirst  map[string]int   // first GET: send this many bytes, then hang
	block       map[string]int   // every GET: send this many bytes, then hang until the client leaves
	ignoreRange bool
	fail503     bool // first GET of each file answers 503

	mu       sync.Mutex
	gets     map[string]int
	heads    map[string]int
	rangeLog []string // "file range"
	hubAuth  []string // Authorization headers seen by the hub
	cdnAuth  []string // Authorization headers seen by the CDN
	srv      *httptest.Server
}

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func gitSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// newFakeRepo returns the files of a small sharded repo.
func newFakeRepo(t *testing.T) (map[string][]byte, map[string]bool) {
	t.Helper()
	index := map[string]any{
		"metadata": map[string]any{"total_size": 3},
		"weight_map": map[string]string{
			"model.embed_tokens.weight":         hubTestShard1,
			"model.layers.0.mlp.up_proj.weight": hubTestShard1,
			"model.norm.weight":                 hubTestShard2,
			"lm_head.weight":                    hubTestShard2,
		},
	}
	ib, err := json.Marshal(index)
	require.NoError(t, err)
	files := map[string][]byte{
		"config.json":            []byte(`{"model_type":"internlm3","hidden_size":8}`),
		"generation_config.json": []byte(`{"eos_token_id":[2]}`),
		"tokenizer.model":        randBytes(1, 5000),
		"tokenizer_config.json":  []byte(`{"add_bos_token":true}`),
		hubIndexFile:             ib,
		hubTestShard1:            randBytes(2, 300_000),
		hubTestShard2:            randBytes(3, 200_001),
	}
	lfs := map[string]bool{"tokenizer.model": true, hubTestShard1: true, hubTestShard2: true}
	return files, lfs
}

func newFakeHub(t *testing.T, files map[string][]byte, lfs map[string]bool) *fakeHub {
	h := &fakeHub{
		t: t, repo: hubTestRepo, rev: "main", files: files, lfs: lfs,
		badSHA: map[string]bool{}, dropFirst: map[string]int{}, stallFirst: map[string]int{}, block: map[string]int{},
		gets: map[string]int{}, heads: map[string]int{},
	}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serveHub))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) withCDN() {
	h.cdn = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	h.t.Cleanup(h.cdn.Close)
}

func (h *fakeHub) totalGets() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.gets {
		n += c
	}
	return n
}

func (h *fakeHub) getsOf(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets[name]
}

func (h *fakeHub) snapshot(p *[]string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), (*p)...)
}

func (h *fakeHub) ranges() []string      { return h.snapshot(&h.rangeLog) }
func (h *fakeHub) hubAuthSeen() []string { return h.snapshot(&h.hubAuth) }
func (h *fakeHub) cdnAuthSeen() []string { return h.snapshot(&h.cdnAuth) }

func (h *fakeHub) sha(name string) string {
	if h.badSHA[name] {
		return strings.Repeat("ab", 32)
	}
	return sha256Hex(h.files[name])
}

func (h *fakeHub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.hubAuth = append(h.hubAuth, r.Header.Get("Authorization"))
	h.mu.Unlock()
	prefix := "/" + h.repo + "/resolve/" + h.rev + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	if h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+h.repo+" is restricted.")
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, prefix)
	data, ok := h.files[name]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	if h.lfs[name] {
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("X-Linked-Etag", `"`+h.sha(name)+`"`)
		if h.cdn != nil {
			w.Header().Set("Location", h.cdn.URL+"/blobs/"+name+"?X-Amz-Signature=x")
			w.WriteHeader(http.StatusFound)
			return
		}
		w.Header().Set("ETag", `"`+h.sha(name)+`"`)
	} else {
		w.Header().Set("ETag", `"`+gitSHA1(data)+`"`)
	}
	h.serveContent(w, r, name, data)
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.cdnAuth = append(h.cdnAuth, r.Header.Get("Authorization"))
	h.mu.Unlock()
	name := strings.TrimPrefix(r.URL.Path, "/blobs/")
	data, ok := h.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", `"cdn-etag-not-a-sha"`)
	h.serveContent(w, r, name, data)
}

func (h *fakeHub) serveContent(w http.ResponseWriter, r *http.Request, name string, data []byte) {
	h.mu.Lock()
	if r.Method == http.MethodHead {
		h.heads[name]++
		h.mu.Unlock()
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
		return
	}
	h.gets[name]++
	attempt := h.gets[name]
	if h.fail503 && attempt == 1 {
		h.mu.Unlock()
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if rg := r.Header.Get("Range"); rg != "" {
		h.rangeLog = append(h.rangeLog, name+" "+rg)
	}
	h.mu.Unlock()

	if n, ok := h.dropFirst[name]; ok && attempt == 1 {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			h.t.Errorf("hijack: %v", err)
			return
		}
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(data))
		bw.Write(data[:n])
		bw.Flush()
		conn.Close()
		return
	}
	if n, ok := h.block[name]; ok {
		h.sendThenHang(w, r, data, n)
		return
	}
	if n, ok := h.stallFirst[name]; ok && attempt == 1 {
		h.sendThenHang(w, r, data, n)
		return
	}
	if h.ignoreRange {
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

func (h *fakeHub) sendThenHang(w http.ResponseWriter, r *http.Request, data []byte, n int) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:n])
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(30 * time.Second):
	}
}

// fastHubRetries shortens backoff for the test.
func fastHubRetries(t *testing.T) {
	oldBase, oldMax, oldStall := hubBackoffBase, hubBackoffMax, hubStallTimeout
	hubBackoffBase, hubBackoffMax = 5*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { hubBackoffBase, hubBackoffMax, hubStallTimeout = oldBase, oldMax, oldStall })
}

func (h *fakeHub) opts() DownloadOptions {
	return DownloadOptions{Endpoint: h.srv.URL, Token: h.token}
}

func assertHubFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		require.True(t, bytes.Equal(want, got), "content of %s", name)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	assert.Empty(t, parts, "leftover .part files")
}

func TestHubDownloadFull(t *testing.T) {
	fastHubRetries(t)
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	cache := t.TempDir()

	var calls [][2]int64
	opts := h.opts()
	opts.Progress = func(done, total int64) { calls = append(calls, [2]int64{done, total}) }
	dir, err := Download(context.Background(), hubTestRepo, cache, opts)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(cache, "internlm--tiny-fake", "main"), dir)
	assertHubFiles(t, dir, files)

	var sum int64
	for _, b := range files {
		sum += int64(len(b))
	}
	require.NotEmpty(t, calls)
	last := calls[len(calls)-1]
	assert.Equal(t, [2]int64{sum, sum}, last)
	for i := 1; i < len(calls); i++ {
		assert.LessOrEqual(t, calls[i-1][0], calls[i][0], "progress goes forward")
		assert.Equal(t, sum, calls[i][1])
	}
	for name := range files {
		assert.Equal(t, 1, h.getsOf(name), "GETs of %s", name)
	}
	assert.Empty(t, h.ranges())
}

func TestHubSingleFileNoIndexNoGenerationConfig(t *testing.T) {
	files, lfs := newFakeRepo(t)
	delete(files, hubIndexFile)
	delete(files, hubTestShard1)
	delete(files, hubTestShard2)
	delete(files, "generation_config.json")
	files[hubSingleFile] = randBytes(9, 12345)
	lfs[hubSingleFile] = true
	h := newFakeHub(t, files, lfs)

	dir, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	_, err = os.Stat(filepath.Join(dir, "generation_config.json"))
	assert.True(t, os.IsNotExist(err))
}

func TestHubResumeAfterDroppedConnection(t *testing.T) {
	fastHubRetries(t)
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.dropFirst[hubTestShard1] = 100_000
	h.dropFirst["config.json"] = 5

	dir, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	assert.Contains(t, h.ranges(), hubTestShard1+" bytes=100000-")
	assert.Contains(t, h.ranges(), "config.json bytes=5-")
	assert.Equal(t, 2, h.getsOf(hubTestShard1))
}

func TestHubResumeThroughCDN(t *testing.T) {
	fastHubRetries(t)
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.withCDN()
	h.dropFirst[hubTestShard2] = 77_777

	dir, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	assert.Contains(t, h.ranges(), hubTestShard2+" bytes=77777-")
}

func TestHubResumeExistingPartOnRerun(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	cache := t.TempDir()
	dir := filepath.Join(cache, "internlm--tiny-fake", "main")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, hubTestShard1+".part"), files[hubTestShard1][:123_456], 0o644))

	got, err := Download(context.Background(), hubTestRepo, cache, h.opts())
	require.NoError(t, err)
	assert.Equal(t, dir, got)
	assertHubFiles(t, dir, files)
	assert.Equal(t, []string{hubTestShard1 + " bytes=123456-"}, h.ranges())
}

func TestHubServerIgnoresRange(t *testing.T) {
	fastHubRetries(t)
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.ignoreRange = true
	h.dropFirst[hubTestShard1] = 50_000
	cache := t.TempDir()
	dir := filepath.Join(cache, "internlm--tiny-fake", "main")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	// A stale .part with wrong bytes: the 200 answer must replace it, not append.
	require.NoError(t, os.WriteFile(filepath.Join(dir, hubTestShard2+".part"), bytes.Repeat([]byte{0xEE}, 999), 0o644))

	_, err := Download(context.Background(), hubTestRepo, cache, h.opts())
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	assert.Contains(t, h.ranges(), hubTestShard1+" bytes=50000-")
	assert.Contains(t, h.ranges(), hubTestShard2+" bytes=999-")
}

func TestHubStalledConnectionResumes(t *testing.T) {
	fastHubRetries(t)
	hubStallTimeout = 200 * time.Millisecond
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.stallFirst[hubTestShard2] = 4096

	dir, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	assert.Contains(t, h.ranges(), hubTestShard2+" bytes=4096-")
}

func TestHubSHA256Mismatch(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.badSHA[hubTestShard2] = true

	cache := t.TempDir()
	_, err := Download(context.Background(), hubTestRepo, cache, h.opts())
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, hubTestShard2)
	assert.Contains(t, msg, "sha256 mismatch")
	assert.Contains(t, msg, h.srv.URL+"/"+hubTestRepo+"/resolve/main/"+hubTestShard2)
	assert.NotContains(t, msg, "\n")
	dir := filepath.Join(cache, "internlm--tiny-fake", "main")
	_, err = os.Stat(filepath.Join(dir, hubTestShard2))
	assert.True(t, os.IsNotExist(err), "no final file")
	_, err = os.Stat(filepath.Join(dir, hubTestShard2+".part"))
	assert.True(t, os.IsNotExist(err), "no .part file")
}

func TestHubUnauthorizedMentionsToken(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.token = "hf_right"

	for _, tok := range []string{"", "hf_wrong_secret_123"} {
		t.Setenv("HF_TOKEN", "")
		opts := h.opts()
		opts.Token = tok
		_, err := Download(context.Background(), hubTestRepo, t.TempDir(), opts)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "HF_TOKEN")
		assert.Contains(t, err.Error(), "401")
		assert.Contains(t, err.Error(), "config.json")
		assert.NotContains(t, err.Error(), "hf_wrong_secret_123")
		assert.NotContains(t, err.Error(), "hf_right")
	}
}

func TestHub404OnShard(t *testing.T) {
	files, lfs := newFakeRepo(t)
	delete(files, hubTestShard2)
	h := newFakeHub(t, files, lfs)

	_, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.Error(t, err)
	assert.Contains(t, err.Error(), hubTestShard2)
	assert.Contains(t, err.Error(), hubTestRepo)
	assert.Contains(t, err.Error(), "404")
}

func TestHub404OnRequiredFile(t *testing.T) {
	files, lfs := newFakeRepo(t)
	delete(files, "tokenizer.model")
	h := newFakeHub(t, files, lfs)

	_, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tokenizer.model")
	assert.Contains(t, err.Error(), hubTestRepo)
}

func TestHubEndpointAndTokenFromEnv(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.token = "hf_env_token"
	t.Setenv("HF_ENDPOINT", h.srv.URL+"/")
	t.Setenv("HF_TOKEN", "hf_env_token")

	dir, err := Download(context.Background(), hubTestRepo, t.TempDir(), DownloadOptions{})
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	for _, a := range h.hubAuthSeen() {
		assert.Equal(t, "Bearer hf_env_token", a)
	}
}

func TestHubTokenNotForwardedToOtherHost(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.token = "hf_secret"
	h.withCDN()

	dir, err := Download(context.Background(), hubTestRepo, t.TempDir(), h.opts())
	require.NoError(t, err)
	assertHubFiles(t, dir, files)
	require.NotEmpty(t, h.hubAuthSeen())
	for _, a := range h.hubAuthSeen() {
		assert.Equal(t, "Bearer hf_secret", a)
	}
	require.NotEmpty(t, h.cdnAuthSeen(), "LFS files came from the CDN")
	for _, a := range h.cdnAuthSeen() {
		assert.Empty(t, a, "Authorization leaked to the CDN")
	}
}

func TestHubRerunDownloadsNothing(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.withCDN()
	cache := t.TempDir()

	_, err := Download(context.Background(), hubTestRepo, cache, h.opts())
	require.NoError(t, err)
	before := h.totalGets()
	require.Equal(t, len(files), before)

	var last [2]int64
	opts := h.opts()
	opts.Progress = func(done, total int64) { last = [2]int64{done, total} }
	dir, err := Download(context.Background(), hubTestRepo, cache, opts)
	require.NoError(t, err)
	assert.Equal(t, before, h.totalGets(), "rerun made no GETs")
	assertHubFiles(t, dir, files)
	assert.Equal(t, last[1], last[0])

	// A corrupted final file (same size) is fetched again.
	p := filepath.Join(dir, hubTestShard1)
	b := append([]byte(nil), files[hubTestShard1]...)
	b[10] ^= 0xff
	require.NoError(t, os.WriteFile(p, b, 0o644))
	_, err = Download(context.Background(), hubTestRepo, cache, h.opts())
	require.NoError(t, err)
	assert.Equal(t, before+1, h.totalGets())
	assertHubFiles(t, dir, files)
}

func TestHubCancellation(t *testing.T) {
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.block[hubTestShard1] = 10_000
	cache := t.TempDir()

	// Everything before shard 1, plus the bytes the server sends before hanging.
	var cancelAt int64 = 10_000
	for _, n := range []string{hubIndexFile, "config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json"} {
		cancelAt += int64(len(files[n]))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := h.opts()
	opts.Progress = func(done, total int64) {
		if done >= cancelAt {
			cancel()
		}
	}
	start := time.Now()
	_, err := Download(ctx, hubTestRepo, cache, opts)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), hubTestShard1)
	assert.Less(t, time.Since(start), 5*time.Second)
	dir := filepath.Join(cache, "internlm--tiny-fake", "main")
	_, err = os.Stat(filepath.Join(dir, hubTestShard1))
	assert.True(t, os.IsNotExist(err))
	// The partial bytes are kept for a later resume.
	fi, err := os.Stat(filepath.Join(dir, hubTestShard1+".part"))
	if assert.NoError(t, err) {
		assert.Equal(t, int64(10_000), fi.Size())
	}

	// Already cancelled: fails at once.
	_, err = Download(ctx, hubTestRepo, cache, h.opts())
	assert.ErrorIs(t, err, context.Canceled)
}

func TestHubRejectsPathTraversal(t *testing.T) {
	for _, bad := range []string{"../evil.safetensors", "sub/x.safetensors", `..\x.safetensors`, "/abs.safetensors", "..", "x.bin", ""} {
		files, lfs := newFakeRepo(t)
		files[hubIndexFile] = []byte(`{"weight_map":{"a":"` + strings.ReplaceAll(bad, `\`, `\\`) + `"}}`)
		h := newFakeHub(t, files, lfs)
		cache := t.TempDir()
		_, err := Download(context.Background(), hubTestRepo, cache, h.opts())
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), hubIndexFile, bad)
		_, serr := os.Stat(filepath.Join(cache, "internlm--tiny-fake", "evil.safetensors"))
		assert.True(t, os.IsNotExist(serr))
	}

	for _, id := range []string{"../x", "/abs/x", "a/../b", "a/b/c", "a", "", "a/..", "./b", "a//b", "a/b/", `a\b/c`} {
		_, err := Download(context.Background(), id, t.TempDir(), DownloadOptions{Endpoint: "http://127.0.0.1:1"})
		assert.Error(t, err, id)
	}
	for _, rev := range []string{"../x", "/main", "a/../b", "main/"} {
		_, err := Download(context.Background(), hubTestRepo, t.TempDir(), DownloadOptions{Endpoint: "http://127.0.0.1:1", Revision: rev})
		assert.Error(t, err, rev)
	}
}

func TestHubRevisionAndRetryOn5xx(t *testing.T) {
	fastHubRetries(t)
	files, lfs := newFakeRepo(t)
	h := newFakeHub(t, files, lfs)
	h.rev = "refs/pr/1"
	h.fail503 = true

	cache := t.TempDir()
	opts := h.opts()
	opts.Revision = "refs/pr/1"
	dir, err := Download(context.Background(), hubTestRepo, cache, opts)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(cache, "internlm--tiny-fake", "refs%2Fpr%2F1"), dir)
	assertHubFiles(t, dir, files)
}

func TestHubIsHubID(t *testing.T) {
	tmp := t.TempDir()
	t.Chdir(tmp)
	require.NoError(t, os.MkdirAll(filepath.Join("local", "model"), 0o755))

	for s, want := range map[string]bool{
		"internlm/internlm3-8b-instruct": true,
		"meta-llama/Llama-3.1-8B":        true,
		"a/b":                            true,
		"local/model":                    false, // exists on disk
		"internlm":                       false,
		"a/b/c":                          false,
		"../x":                           false,
		"a/..":                           false,
		"/abs/x":                         false,
		"a/b..c":                         false,
		"a/b--c":                         false,
		"a/-b":                           false,
		"a/b.":                           false,
		"":                               false,
		"a /b":                           false,
		`a\b`:                            false,
	} {
		assert.Equal(t, want, IsHubID(s), s)
	}
}

func TestHubDefaultCacheDir(t *testing.T) {
	t.Setenv("ILMWEB_CACHE", "/some/where")
	d, err := DefaultCacheDir()
	require.NoError(t, err)
	assert.Equal(t, "/some/where", d)

	t.Setenv("ILMWEB_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	t.Setenv("HOME", "/home/u")
	d, err = DefaultCacheDir()
	require.NoError(t, err)
	base, err := os.UserCacheDir()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(base, "ilmweb", "hub"), d)
}

func TestHubParseContentRange(t *testing.T) {
	type r struct {
		start, total int64
		ok           bool
	}
	cases := map[string]r{
		"bytes 0-9/10": {0, 10, true},
		"bytes 5-9/*":  {5, -1, true},
		"bytes */10":   {-1, 10, true},
		"bytes x-9/10": {0, 0, false},
		"items 0-9/10": {0, 0, false},
		"bytes 0-9":    {0, 0, false},
		"":             {0, 0, false},
	}
	keys := make([]string, 0, len(cases))
	for k := range cases {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, tot, ok := parseContentRange(k)
		want := cases[k]
		if !want.ok {
			assert.False(t, ok, k)
			continue
		}
		assert.Equal(t, want, r{s, tot, ok}, k)
	}
	assert.True(t, errors.Is(&hubError{err: context.Canceled}, context.Canceled))
}
