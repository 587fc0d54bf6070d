package e2e

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/systeminfo"
	"github.com/chromedp/chromedp"
)

// The real engine (engine.wasm, built from wasm/) on the tiny synthetic model, converted by cmd/convert.

const prompt = "Hello! Who are you?"

type storedMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	Stats   *struct {
		FinishReason     string `json:"finish_reason"`
		PromptTokens     int    `json:"prompt_tokens"`
		CompletionTokens int    `json:"completion_tokens"`
		PrefilledTokens  int    `json:"prefilled_tokens"`
		Error            string `json:"error"`
	} `json:"stats"`
}

// storedMessages returns the messages of the most recently updated conversation in IndexedDB: the raw
// text the model produced, before any rendering.
func storedMessages(t *testing.T, ctx context.Context) []storedMessage {
	t.Helper()
	return eval[[]storedMessage](t, ctx, `new Promise((resolve, reject) => {
		const open = indexedDB.open('ilmweb');
		open.onerror = () => reject(open.error);
		open.onsuccess = () => {
			const get = open.result.transaction('conversations').objectStore('conversations').getAll();
			get.onsuccess = () => resolve(get.result.sort((a, b) => b.updated - a.updated)[0].messages);
		};
	})`)
}

// tinyModel synthesizes (with synth's flags beyond -preset tiny, if any) and converts the tiny model, and
// returns its directory.
func tinyModel(t *testing.T, synthFlags ...string) string {
	t.Helper()
	dir := t.TempDir()
	goRun(t, append(append([]string{"./cmd/synth", "-preset", "tiny"}, synthFlags...), "-out", filepath.Join(dir, "hf"))...)
	goRun(t, "./cmd/convert", filepath.Join(dir, "hf"), filepath.Join(dir, "model"))
	return filepath.Join(dir, "model")
}

func goRun(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"run"}, args...)...)
	cmd.Dir = ".."
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// engineReady skips the test until the pieces it needs exist: the wasm engine and the converter.
func engineReady(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{"../wasm", "../cmd/convert"} {
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("waits for %s", strings.TrimPrefix(dir, "../"))
		}
	}
	site := siteDir(t)
	if st, err := os.Stat(filepath.Join(site, "engine.wasm")); err != nil || st.Size() < 1<<20 {
		skipOrFail(t, "build/web has no real engine.wasm: run make web")
	}
	chromiumPath(t)
	return site
}

func TestWasmEngine(t *testing.T) {
	site := engineReady(t)
	modelDir := tinyModel(t)
	native := strings.TrimSuffix(goRun(t, "./cmd/chat", "-model", modelDir, "-prompt", prompt, "-temperature", "0", "-max-tokens", "24"), "\n")

	s := newTestServer(t, &fakeModel{dir: modelDir}, false)
	ctx := newBrowser(t)
	// Greedy decoding, and the same token budget as the native run.
	navigate(t, ctx, s.URL+"/test/harness.html")
	eval[bool](t, ctx, `(localStorage.setItem('ilmweb.settings', JSON.stringify({temperature: 0, max_tokens: 24})), true)`)

	start := time.Now()
	openPage(t, ctx, s)
	loaded := time.Since(start)
	eval[bool](t, ctx, `(document.getElementById('prompt').value = `+jsString(prompt)+`, document.getElementById('composer').requestSubmit(), true)`)
	waitFor(t, ctx, `document.querySelector('.msg.assistant .content')?.textContent.trim() || (document.querySelector('.msg.assistant') && !document.querySelector('.msg.streaming'))`, 2*time.Minute)
	firstToken := time.Since(start)
	waitFor(t, ctx, `!document.querySelector('.msg.streaming')`, 2*time.Minute)
	t.Logf("tiny model, CPU backend in wasm: page load to engine ready %v, to first token %v", loaded.Round(time.Millisecond), firstToken.Round(time.Millisecond))
	logWasmSize(t, site)

	checkTwoTurns(t, ctx, native)

	// With the server gone, a reload opens the app from the service worker and the model from storage.
	waitFor(t, ctx, `navigator.serviceWorker.controller`, 30*time.Second)
	s.Close()
	openPage(t, ctx, s)
	ask(t, ctx, prompt)
	msgs := storedMessages(t, ctx)
	if last := msgs[len(msgs)-1]; last.Stats == nil || (last.Stats.FinishReason != "stop" && last.Stats.FinishReason != "length") {
		t.Errorf("offline answer %+v", last)
	}
}

// TestWasmEngineWebGPU runs the chat page on its default backend, WebGPU (SwiftShader in headless
// Chromium), which streams the model onto the GPU shard by shard: its greedy answer must be the native
// CPU engine's, the second turn must reuse the first turn's cache, and a lost device must surface as
// "device-lost", after which the page reloads the engine and goes on.
func TestWasmEngineWebGPU(t *testing.T) {
	engineReady(t)
	modelDir := tinyModel(t)
	native := strings.TrimSuffix(goRun(t, "./cmd/chat", "-model", modelDir, "-prompt", prompt, "-temperature", "0", "-max-tokens", "24"), "\n")
	s := newTestServer(t, &fakeModel{dir: modelDir}, false)
	ctx := newBrowser(t)
	navigate(t, ctx, s.URL+"/test/harness.html")
	eval[bool](t, ctx, `(localStorage.setItem('ilmweb.settings', JSON.stringify({temperature: 0, max_tokens: 24})), true)`)

	start := time.Now()
	navigate(t, ctx, s.URL+"/") // the page as users open it: backend WebGPU
	waitFor(t, ctx, `(!document.getElementById('send').disabled && document.getElementById('loader').hidden) || !document.getElementById('notice').hidden`, 2*time.Minute)
	loaded := time.Since(start)
	if failed := eval[string](t, ctx, `document.getElementById('notice').hidden ? '' : document.getElementById('notice').dataset.type || 'unknown'`); failed != "" {
		shown := eval[string](t, ctx, `document.getElementById('notice').innerText`)
		if failed == "no-webgpu" && !mustRun() {
			t.Skipf("this Chromium offers no WebGPU; the page shows:\n%s", shown)
		}
		t.Fatalf("loading on WebGPU failed (%s); the page shows:\n%s", failed, shown)
	}
	engineLine := eval[string](t, ctx, `document.getElementById('status-engine').textContent`)
	if !strings.HasPrefix(engineLine, "WebGPU") {
		t.Fatalf("the engine runs on %q, not WebGPU", engineLine)
	}
	eval[bool](t, ctx, `(document.getElementById('prompt').value = `+jsString(prompt)+`, document.getElementById('composer').requestSubmit(), true)`)
	waitFor(t, ctx, `document.querySelector('.msg.assistant .content')?.textContent.trim() || (document.querySelector('.msg.assistant') && !document.querySelector('.msg.streaming'))`, 2*time.Minute)
	firstToken := time.Since(start)
	waitFor(t, ctx, `!document.querySelector('.msg.streaming')`, 2*time.Minute)
	answered := time.Since(start)
	t.Logf("tiny model on %s: page load to engine ready %v, to first token %v, to the whole answer %v", engineLine,
		loaded.Round(time.Millisecond), firstToken.Round(time.Millisecond), answered.Round(time.Millisecond))

	checkTwoTurns(t, ctx, native)

	// A GPU reset: with Chromium's GPU process gone, the device is lost, the next answer fails as
	// "device-lost", the page reloads the engine on a new device, and the conversation goes on.
	killGPUProcess(t, ctx)
	eval[bool](t, ctx, `(document.getElementById('prompt').value = 'Again?', document.getElementById('composer').requestSubmit(), true)`)
	waitFor(t, ctx, `document.getElementById('notice-title').textContent === 'The engine is back'`, 2*time.Minute)
	msgs := storedMessages(t, ctx)
	if last := msgs[len(msgs)-1]; last.Stats == nil || !strings.Contains(last.Stats.Error, "GPU device was lost") {
		t.Fatalf("the answer after the GPU process died ended as %+v", last)
	}
	t.Logf("after the GPU process died: %q", msgs[len(msgs)-1].Stats.Error)
	ask(t, ctx, "Tell me more.")
	msgs = storedMessages(t, ctx)
	if last := msgs[len(msgs)-1]; last.Stats == nil || last.Stats.Error != "" || last.Stats.CompletionTokens == 0 {
		t.Errorf("the answer on the reloaded engine: %+v", last)
	}
	if line := eval[string](t, ctx, `document.getElementById('status-engine').textContent`); !strings.HasPrefix(line, "WebGPU") {
		t.Errorf("the reloaded engine runs on %q", line)
	}
}

// killGPUProcess ends the GPU process of the test's Chromium (which starts another on demand).
func killGPUProcess(t *testing.T, ctx context.Context) {
	t.Helper()
	info, err := cdp.Call(ctx, chromedp.FromContext(ctx).Browser, systeminfo.GetProcessInfo, cdp.Empty{})
	if err != nil {
		t.Fatalf("SystemInfo.getProcessInfo: %v", err)
	}
	for _, p := range info.ProcessInfo {
		if p.Type == "GPU" {
			proc, err := os.FindProcess(int(p.ID))
			if err == nil {
				err = proc.Kill()
			}
			if err != nil {
				t.Fatalf("kill the GPU process %d: %v", p.ID, err)
			}
			return
		}
	}
	t.Fatalf("Chromium has no GPU process: %+v", info.ProcessInfo)
}

func logWasmSize(t *testing.T, site string) {
	f, err := os.Open(filepath.Join(site, "engine.wasm"))
	if err != nil {
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	n := &countWriter{}
	zw := gzip.NewWriter(n)
	io.Copy(zw, f)
	zw.Close()
	t.Logf("engine.wasm: %d bytes, %d gzipped", st.Size(), n.n)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// checkTwoTurns checks the conversation after the page's first answer: it equals the native greedy answer;
// then a second turn must reuse the first turn's cache, prefilling at most what the first turn added.
func checkTwoTurns(t *testing.T, ctx context.Context, native string) {
	t.Helper()
	msgs := storedMessages(t, ctx)
	if len(msgs) != 2 || msgs[1].Stats == nil || msgs[1].Stats.Error != "" {
		t.Fatalf("after the first turn the conversation is %+v", msgs)
	}
	if msgs[1].Content != native {
		t.Errorf("greedy answer in the browser %q, natively %q", msgs[1].Content, native)
	}
	first := *msgs[1].Stats
	ask(t, ctx, "Tell me more.")
	msgs = storedMessages(t, ctx)
	if len(msgs) != 4 || msgs[3].Stats == nil || msgs[3].Stats.Error != "" {
		t.Fatalf("after the second turn the conversation is %+v", msgs)
	}
	second := *msgs[3].Stats
	t.Logf("first turn: %d prompt tokens, %d generated; second turn: %d prompt tokens, %d prefilled, %d generated",
		first.PromptTokens, first.CompletionTokens, second.PromptTokens, second.PrefilledTokens, second.CompletionTokens)
	if second.PrefilledTokens <= 0 || second.PrefilledTokens > second.PromptTokens-first.PromptTokens {
		t.Errorf("second turn prefilled %d of %d prompt tokens; the first turn's prompt had %d, so at most %d are new",
			second.PrefilledTokens, second.PromptTokens, first.PromptTokens, second.PromptTokens-first.PromptTokens)
	}
}
