package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/ilmweb/ilmweb/model"
)

// The download manager (web/download.js) through the public API (web/engine.js) on testdata/harness.html,
// with the mock engine.

type loadResult struct {
	OK      bool   `json:"ok"`
	Type    string `json:"type"`
	Message string `json:"message"`
	Info    struct {
		Backend      string `json:"backend"`
		MaxContext   int    `json:"maxContext"`
		SystemPrompt string `json:"systemPrompt"`
	} `json:"info"`
	EngineError bool `json:"engineError"`
}

type progressEvent struct {
	Phase          string   `json:"phase"`
	Loaded         int64    `json:"loaded"`
	Total          int64    `json:"total"`
	BytesPerSecond float64  `json:"bytesPerSecond"`
	EtaSeconds     *float64 `json:"etaSeconds"`
	Shard          string   `json:"shard"`
	ShardsDone     int      `json:"shardsDone"`
	ShardsTotal    int      `json:"shardsTotal"`
}

func openHarness(t *testing.T, s *testServer) (ctx context.Context) {
	t.Helper()
	return openHarnessFor(t, s, 4*time.Minute)
}

// openHarnessFor is openHarness in a browser whose context ends after timeout.
func openHarnessFor(t *testing.T, s *testServer, timeout time.Duration) (ctx context.Context) {
	t.Helper()
	ctx = newBrowserFor(t, timeout)
	navigate(t, ctx, s.URL+"/test/harness.html")
	waitFor(t, ctx, `window.harnessReady`, 10*time.Second)
	return ctx
}

// measuredModel is the converted model directory the environment variable env names, for a measurement
// that a script runs (script makes the model); without it the measurement is skipped, as a benchmark is.
func measuredModel(t *testing.T, env, script string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		t.Skipf("set %s to a converted model directory (%s)", env, script)
	}
	engineReady(t)
	return dir
}

func load(t *testing.T, ctx context.Context) loadResult {
	t.Helper()
	return eval[loadResult](t, ctx, `load()`)
}

func mustLoad(t *testing.T, ctx context.Context) loadResult {
	t.Helper()
	r := load(t, ctx)
	if !r.OK {
		t.Fatalf("load failed: %s: %s", r.Type, r.Message)
	}
	return r
}

func storedEntries(t *testing.T, ctx context.Context) int {
	return eval[int](t, ctx, `caches.open('ilmweb-model-v1').then((c) => c.keys()).then((k) => k.length)`)
}

func TestDownloadProgressAndCache(t *testing.T) {
	m := writeFakeModel(t, 1<<20, 1<<20, 1<<20, 600<<10)
	s := newTestServer(t, m, true)
	s.throttle = 20 * time.Millisecond // ≈ 3 MB/s per connection: several progress events per shard
	ctx := openHarness(t, s)

	r := mustLoad(t, ctx)
	if r.Info.SystemPrompt != "You are a test assistant." || r.Info.Backend != "cpu" {
		t.Errorf("loaded info = %+v", r.Info)
	}
	events := eval[[]progressEvent](t, ctx, `events`)
	var total int64
	for _, e := range append(m.files, m.shards...) {
		total += e.Bytes
	}
	var download []progressEvent
	phases := map[string]bool{}
	for _, e := range events {
		phases[e.Phase] = true
		if e.Phase == "download" {
			download = append(download, e)
		}
	}
	for _, p := range []string{"verify", "download", "prepare", "upload"} {
		if !phases[p] {
			t.Errorf("no %q progress event", p)
		}
	}
	if len(download) < 5 {
		t.Fatalf("only %d download progress events", len(download))
	}
	sawRate := false
	for i, e := range download {
		if e.Total != total {
			t.Fatalf("download event %d: total %d, want %d", i, e.Total, total)
		}
		if i > 0 && e.Loaded < download[i-1].Loaded {
			t.Errorf("download event %d: loaded went back from %d to %d", i, download[i-1].Loaded, e.Loaded)
		}
		if e.BytesPerSecond > 0 && e.EtaSeconds != nil && *e.EtaSeconds >= 0 && e.Shard != "" {
			sawRate = true
		}
	}
	if !sawRate {
		t.Errorf("no download event with a rate, an ETA and a shard name: %+v", download)
	}
	// After the download, the last event before the engine's set-up accounts for every byte and shard.
	var last progressEvent
	for _, e := range events {
		if e.Phase == "prepare" {
			break
		}
		last = e
	}
	if last.Loaded != total || last.ShardsDone != len(m.shards) || last.ShardsTotal != len(m.shards) {
		t.Errorf("progress before the upload = %+v, want loaded %d and %d shards done", last, total, len(m.shards))
	}
	for _, sh := range m.shards {
		if reqs := s.requests(sh.Name); len(reqs) != 1 || reqs[0].Status != 200 || reqs[0].Sent != sh.Bytes {
			t.Errorf("%s: requests %+v, want one whole 200", sh.Name, reqs)
		}
	}
	if n, want := storedEntries(t, ctx), len(m.files)+len(m.shards)+1; n != want {
		t.Errorf("%d entries in Cache Storage, want %d (files, shards, manifest)", n, want)
	}

	// A second start finds everything stored: it asks for the manifest again, and for nothing else.
	before := len(s.requests(""))
	mustLoad(t, ctx)
	if reqs := s.requests("")[before:]; len(reqs) != 1 || reqs[0].Name != "manifest.json" {
		t.Errorf("second load made requests %+v, want only the manifest", reqs)
	}
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	m := writeFakeModel(t, 1<<20, 1<<20, 1<<20)
	s := newTestServer(t, m, true)
	shard := m.shards[1]
	const cut = 400_000
	s.cutAfter(shard.Name, cut)
	ctx := openHarness(t, s)

	mustLoad(t, ctx)
	reqs := s.requests(shard.Name)
	if len(reqs) != 2 {
		t.Fatalf("%s: requests %+v, want the cut one and one resuming it", shard.Name, reqs)
	}
	if reqs[0].Sent != cut || reqs[0].Range != "" {
		t.Errorf("first request %+v, want a whole-file request cut at %d", reqs[0], cut)
	}
	var from int64
	if _, err := fmt.Sscanf(reqs[1].Range, "bytes=%d-", &from); err != nil || from <= 0 || from > cut || reqs[1].Status != 206 || reqs[1].Sent != shard.Bytes-from {
		t.Errorf("second request %+v, want a 206 for the rest of the shard from the bytes kept (≤ %d)", reqs[1], cut)
	}
}

func TestResumeAfterReload(t *testing.T) {
	m := writeFakeModel(t, 1<<20, 1<<20, 1<<20)
	s := newTestServer(t, m, true)
	shard := m.shards[2]
	const held = 500_000
	reached, release := s.holdAt(shard.Name, held)
	defer release()
	ctx := openHarness(t, s)

	eval[bool](t, ctx, `(load().then((r) => (window.firstLoad = r)), true)`)
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatalf("the download of %s never reached byte %d", shard.Name, held)
	}
	time.Sleep(300 * time.Millisecond) // let the worker write what it received
	navigate(t, ctx, "about:blank")    // the tab goes away mid-shard, and its worker with it
	release()

	navigate(t, ctx, s.URL+"/test/harness.html")
	waitFor(t, ctx, `window.harnessReady`, 10*time.Second)
	mustLoad(t, ctx)
	reqs := s.requests(shard.Name)
	if len(reqs) != 2 {
		t.Fatalf("%s: requests %+v, want the interrupted one and one resuming it", shard.Name, reqs)
	}
	var from int64
	if _, err := fmt.Sscanf(reqs[1].Range, "bytes=%d-", &from); err != nil || from <= 0 || from > held || reqs[1].Status != 206 {
		t.Errorf("second request %+v, want a 206 for a range from the kept bytes (≤ %d)", reqs[1], held)
	}
	for _, sh := range m.shards[:2] {
		if n := len(s.requests(sh.Name)); n != 1 {
			t.Errorf("%s was requested %d times, want once", sh.Name, n)
		}
	}
}

func TestCorruptedCacheEntryIsFetchedAgain(t *testing.T) {
	m := writeFakeModel(t, 300_000, 300_000, 300_000)
	s := newTestServer(t, m, true)
	ctx := openHarness(t, s)
	mustLoad(t, ctx)

	bad := m.shards[1]
	eval[bool](t, ctx, fmt.Sprintf(`caches.open('ilmweb-model-v1').then((c) => c.put(
		location.origin + '/.ilmweb-blob/sha256/%s', new Response(new Uint8Array(%d)))).then(() => true)`, bad.SHA256, bad.Bytes))
	mustLoad(t, ctx)
	for _, sh := range m.shards {
		want := 1
		if sh.Name == bad.Name {
			want = 2
		}
		if n := len(s.requests(sh.Name)); n != want {
			t.Errorf("%s was requested %d times, want %d", sh.Name, n, want)
		}
	}
}

func TestHashMismatchIsRejected(t *testing.T) {
	m := writeFakeModel(t, 200_000, 200_000, 200_000)
	s := newTestServer(t, m, true)
	restore := m.corrupt(t, 1)
	ctx := openHarness(t, s)

	r := load(t, ctx)
	if r.OK || r.Type != "hash-mismatch" || !r.EngineError || !strings.Contains(r.Message, m.shards[1].Name) {
		t.Fatalf("load with a damaged shard = %+v, want a hash-mismatch EngineError naming %s", r, m.shards[1].Name)
	}
	if n := len(s.requests(m.shards[1].Name)); n != 2 {
		t.Errorf("the damaged shard was requested %d times, want 2 (one retry from scratch)", n)
	}
	restore()
	mustLoad(t, ctx)
	if n := len(s.requests(m.shards[0].Name)); n != 1 {
		t.Errorf("the good shard 0 was requested %d times, want once (kept from the failed load)", n)
	}
}

func TestQuotaExceeded(t *testing.T) {
	m := writeFakeModel(t, 2<<20, 2<<20)
	s := newTestServer(t, m, true)
	ctx := openHarness(t, s)

	// Before anything is downloaded: a model larger than the whole quota fails at once, saying so.
	quota := int64(eval[float64](t, ctx, `navigator.storage.estimate().then((e) => e.quota)`))
	m.rewriteManifest(t, append(m.shards[:2:2], bigShards(t, 2, quota+1<<30)...))
	r := load(t, ctx)
	if r.OK || r.Type != "quota-exceeded" || !strings.Contains(r.Message, "it takes") || !strings.Contains(r.Message, "at most") {
		t.Fatalf("load over quota = %+v, want quota-exceeded saying how large the model and the quota are", r)
	}
	if n := len(s.requests("")); n != 1 {
		t.Errorf("%d requests before the quota check failed, want 1 (the manifest): %+v", n, s.requests(""))
	}

	// A browser that grants less than it estimated: the refused write says so too.
	m.rewriteManifest(t, m.shards)
	granted := float64(1 << 20)
	if _, err := chromedp.Call(ctx, storage.OverrideQuotaForOrigin, storage.OverrideQuotaForOriginParams{Origin: s.URL, QuotaSize: &granted}); err != nil {
		t.Fatal(err)
	}
	if r := load(t, ctx); r.OK || r.Type != "quota-exceeded" || !strings.Contains(r.Message, "refused to store") {
		t.Fatalf("load with writes refused = %+v, want quota-exceeded", r)
	}
	if _, err := chromedp.Call(ctx, storage.OverrideQuotaForOrigin, storage.OverrideQuotaForOriginParams{Origin: s.URL}); err != nil {
		t.Fatal(err)
	}

	// One that fits the quota but not what is left of it (another cache holds 64 MiB) fails before anything
	// is downloaded too, saying how much is needed and how much is available.
	eval[bool](t, ctx, `caches.open('filler').then((c) => c.put('/filler', new Response(new Uint8Array(64 << 20)))).then(() => true)`)
	quota = int64(eval[float64](t, ctx, `navigator.storage.estimate().then((e) => e.quota)`))
	m.rewriteManifest(t, append(m.shards[:2:2], bigShards(t, 2, quota-32<<20-m.shards[0].Bytes-m.shards[1].Bytes)...))
	before := len(s.requests(""))
	r = load(t, ctx)
	if r.OK || r.Type != "quota-exceeded" || !strings.Contains(r.Message, "more are needed") || !strings.Contains(r.Message, "store only") {
		t.Fatalf("load over the quota left = %+v, want quota-exceeded saying how much is needed and available", r)
	}
	if reqs := s.requests("")[before:]; len(reqs) != 1 {
		t.Errorf("requests before the quota check failed: %+v, want only the manifest's", reqs)
	}
}

// TestEngineAPI checks engine.js's OpenAI-style surface: chunk shapes, awaiting a stream, a non-streamed
// completion, stopping with an AbortSignal, and typed errors.
func TestEngineAPI(t *testing.T) {
	m := writeFakeModel(t, 100_000)
	s := newTestServer(t, m, true)
	ctx := openHarness(t, s)
	mustLoad(t, ctx)

	type chunk struct {
		Object  string `json:"object"`
		Choices []struct {
			Delta struct {
				Role    string  `json:"role"`
				Content *string `json:"content"`
			} `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	chunks := eval[[]chunk](t, ctx, `chat([{role: 'user', content: 'echo:one two three'}])`)
	if len(chunks) != 5 || chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Fatalf("chunks %+v, want a role chunk, three content chunks and a final one", chunks)
	}
	var text string
	for _, c := range chunks[1:4] {
		if c.Object != "chat.completion.chunk" || c.Choices[0].Delta.Content == nil || c.Choices[0].FinishReason != nil {
			t.Errorf("content chunk %+v", c)
		} else {
			text += *c.Choices[0].Delta.Content
		}
	}
	last := chunks[4]
	if text != "one two three" || last.Choices[0].FinishReason == nil || *last.Choices[0].FinishReason != "stop" ||
		last.Usage == nil || last.Usage.CompletionTokens != 3 || last.Usage.TotalTokens != last.Usage.PromptTokens+3 {
		t.Errorf("text %q, last chunk %+v", text, last)
	}

	// `await create({stream: true})` gives the same stream, as with OpenAI's SDK.
	got := eval[string](t, ctx, `(async () => {
		let s = '';
		for await (const c of await engine.chat.completions.create({messages: [{role: 'user', content: 'echo:awaited'}], stream: true}))
			s += c.choices[0].delta.content ?? '';
		return s;
	})()`)
	if got != "awaited" {
		t.Errorf("awaited stream gave %q", got)
	}

	type completion struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	c := eval[completion](t, ctx, `engine.chat.completions.create({messages: [{role: 'user', content: [{type: 'text', text: 'echo:whole'}]}], max_tokens: 1})`)
	if c.Object != "chat.completion" || c.Choices[0].Message.Content != "whole" || c.Choices[0].FinishReason != "stop" {
		t.Errorf("completion %+v", c)
	}
	c = eval[completion](t, ctx, `engine.chat.completions.create({messages: [{role: 'user', content: 'echo:a b c'}], max_tokens: 2})`)
	if c.Choices[0].Message.Content != "a b " || c.Choices[0].FinishReason != "length" {
		t.Errorf("completion cut at 2 tokens %+v", c)
	}

	stopped := eval[completion](t, ctx, `(() => {
		const ctl = new AbortController();
		setTimeout(() => ctl.abort(), 300);
		return engine.chat.completions.create({messages: [{role: 'user', content: 'count:100'}], signal: ctl.signal});
	})()`)
	if stopped.Choices[0].FinishReason != "abort" || !strings.HasPrefix(stopped.Choices[0].Message.Content, "1 2 ") || strings.Contains(stopped.Choices[0].Message.Content, " 100 ") {
		t.Errorf("aborted completion %+v", stopped)
	}

	errType := eval[string](t, ctx, `engine.chat.completions.create({messages: [{role: 'robot', content: 'x'}]}).then(() => 'no error', (e) => e.name + ' ' + e.type)`)
	if errType != "EngineError internal" {
		t.Errorf("a bad role gave %q, want an EngineError of type internal", errType)
	}
	errType = eval[string](t, ctx, `(() => {
		const p = engine.chat.completions.create({messages: [{role: 'user', content: 'count:100'}]});
		engine.unload();
		return p.then(() => 'no error', (e) => e.type);
	})()`)
	if errType != "unloaded" {
		t.Errorf("a chat pending at unload gave %q, want unloaded", errType)
	}
}

// bigShards lists shards numbered from first, of at most model.MaxShardBytes each, adding up to total bytes
// (they are never downloaded: their hashes are made up).
func bigShards(t *testing.T, first int, total int64) []entry {
	if total > model.MaxTotalBytes {
		t.Fatalf("a model of %d bytes is over the manifest limit of %d: this browser's quota is too large for the test", total, model.MaxTotalBytes)
	}
	var list []entry
	for i := first; total > 0; i++ {
		n := min(total, model.MaxShardBytes)
		sha := fmt.Sprintf("%064x", i)
		list = append(list, entry{Name: fmt.Sprintf("shard-%05d-%s.bin", i, sha[:16]), Bytes: n, SHA256: sha})
		total -= n
	}
	return list
}
