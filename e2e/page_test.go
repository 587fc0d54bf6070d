package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The chat page (web/index.html, app.js) with the mock engine.

// openPage opens the chat page and waits until its engine is loaded.
func openPage(t *testing.T, ctx context.Context, s *testServer) {
	t.Helper()
	navigate(t, ctx, s.URL+"/?backend=cpu")
	waitReady(t, ctx)
}

func waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, `!document.getElementById('send').disabled && document.getElementById('loader').hidden`, 60*time.Second)
}

// ask sends a message through the composer and waits for the whole answer; it returns the answer's text
// as shown.
func ask(t *testing.T, ctx context.Context, text string) string {
	t.Helper()
	before := eval[int](t, ctx, `document.querySelectorAll('.msg.assistant').length`)
	eval[bool](t, ctx, `(() => {
		document.getElementById('prompt').value = `+jsString(text)+`;
		document.getElementById('composer').requestSubmit();
		return true;
	})()`)
	waitFor(t, ctx, `document.querySelectorAll('.msg.assistant').length > `+strconv.Itoa(before)+` && !document.querySelector('.msg.streaming')`, 60*time.Second)
	return lastAnswer(t, ctx)
}

func lastAnswer(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `[...document.querySelectorAll('.msg.assistant .content')].at(-1).textContent.trim()`)
}

func click(t *testing.T, ctx context.Context, selector string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		t.Fatalf("click %s: %v", selector, err)
	}
}

// storedConversations reads the conversations the page keeps in IndexedDB: [messages per conversation].
func storedConversations(t *testing.T, ctx context.Context) []int {
	t.Helper()
	return eval[[]int](t, ctx, `new Promise((resolve, reject) => {
		const open = indexedDB.open('ilmweb');
		open.onerror = () => reject(open.error);
		open.onsuccess = () => {
			const get = open.result.transaction('conversations').objectStore('conversations').getAll();
			get.onsuccess = () => resolve(get.result.map((c) => c.messages.length));
		};
	})`)
}

func TestPageChat(t *testing.T) {
	m := writeFakeModel(t, 300_000, 300_000)
	s := newTestServer(t, m, true)
	ctx := newBrowser(t)
	openPage(t, ctx, s)

	if got := eval[string](t, ctx, `document.getElementById('status-engine').textContent`); !strings.Contains(got, "CPU") {
		t.Errorf("status shows %q, want the CPU backend named", got)
	}
	if got := ask(t, ctx, "hello there"); got != "You said: hello there" {
		t.Errorf("answer %q", got)
	}
	if got := eval[string](t, ctx, `document.getElementById('status-context').textContent`); !strings.Contains(got, "/ 4096 tokens") {
		t.Errorf("context use shows %q", got)
	}
	if got := eval[string](t, ctx, `document.querySelector('.msg.assistant .meta').textContent`); !strings.Contains(got, "tokens") {
		t.Errorf("answer stats show %q", got)
	}

	// Stop: the answer ends where it was, marked as stopped.
	eval[bool](t, ctx, `(document.getElementById('prompt').value = 'count:300', document.getElementById('composer').requestSubmit(), true)`)
	waitFor(t, ctx, `document.querySelector('.msg.streaming .content')?.textContent.includes('3 ')`, 20*time.Second)
	click(t, ctx, "#stop")
	waitFor(t, ctx, `!document.querySelector('.msg.streaming')`, 10*time.Second)
	if got := lastAnswer(t, ctx); strings.Contains(got, "300") || !strings.HasPrefix(got, "1 2 3") {
		t.Errorf("stopped answer %q", got)
	}
	if got := eval[string](t, ctx, `[...document.querySelectorAll('.msg.assistant .meta')].at(-1).textContent`); !strings.Contains(got, "stopped") {
		t.Errorf("stopped answer's stats show %q", got)
	}

	// Regenerate replaces the last answer.
	ask(t, ctx, "echo:the first answer")
	eval[bool](t, ctx, `(document.querySelector('.msg.assistant:last-child').dataset.old = 'yes', true)`)
	click(t, ctx, ".msg.assistant:last-child .meta button:last-child")
	waitFor(t, ctx, `!document.querySelector('[data-old]') && document.querySelectorAll('.msg').length === 6 &&
		!document.querySelector('.msg.streaming') && document.querySelector('.msg.assistant:last-child .content').textContent.trim() === 'the first answer'`, 20*time.Second)

	// The conversation is in IndexedDB; a new chat starts empty and becomes a second one.
	if got := storedConversations(t, ctx); len(got) != 1 || got[0] != 6 {
		t.Errorf("stored conversations %v, want one of 6 messages", got)
	}
	click(t, ctx, "#new-chat")
	waitFor(t, ctx, `document.querySelectorAll('.msg').length === 0`, 5*time.Second)
	ask(t, ctx, "echo:second chat")
	if got := storedConversations(t, ctx); len(got) != 2 {
		t.Errorf("stored conversations %v, want two", got)
	}

	// After a reload the history is there, the latest conversation open.
	openPage(t, ctx, s)
	if n := eval[int](t, ctx, `document.querySelectorAll('#history li').length`); n != 2 {
		t.Errorf("history lists %d conversations, want 2", n)
	}
	if got := lastAnswer(t, ctx); got != "second chat" {
		t.Errorf("after a reload the open conversation ends with %q", got)
	}

	// A new context length in the settings reloads the model in the same engine (worker), which answers on.
	eval[bool](t, ctx, `(window.workerStarts = 0, window.OriginalWorker ??= Worker, window.Worker = class extends window.OriginalWorker {
		constructor(...a) { super(...a); window.workerStarts++; } }, true)`)
	click(t, ctx, "#open-settings")
	eval[bool](t, ctx, `(document.querySelector('#settings-form [name=contextLength]').value = '2048', true)`)
	click(t, ctx, `#settings-form button[value=save]`)
	waitFor(t, ctx, `document.getElementById('status-context').textContent.includes('/ 2048 tokens')`, 30*time.Second)
	waitReady(t, ctx)
	if got := ask(t, ctx, "echo:after the reload"); got != "after the reload" {
		t.Errorf("the answer after the context length changed: %q", got)
	}
	if n := eval[int](t, ctx, `window.workerStarts`); n != 0 {
		t.Errorf("changing the context length started %d new engine workers, want a reload in the old one", n)
	}
}

func TestModelOutputIsShownAsText(t *testing.T) {
	m := writeFakeModel(t, 100_000)
	s := newTestServer(t, m, true)
	ctx := newBrowser(t)
	openPage(t, ctx, s)

	img := `<img src=x onerror="window.__xss = 1">`
	script := `<script>window.__xss = 2</script>`
	answer := ask(t, ctx, "echo:Look: "+img+" and "+script+"\n\n<iframe src=\"javascript:window.__xss=3\"></iframe>\n\n"+
		"**bold**, `code`, $x^2$ and \\boxed{42}\n\n```js\nalert('<b>hi</b>')\n```\n\n[link](javascript:window.__xss=4)")
	time.Sleep(500 * time.Millisecond) // give an injected handler time to fire
	for _, want := range []string{img, script, "<iframe", "alert('<b>hi</b>')"} {
		if !strings.Contains(answer, want) {
			t.Errorf("the answer does not show %q as text; it shows %q", want, answer)
		}
	}
	if xss := eval[string](t, ctx, `String(window.__xss)`); xss != "undefined" {
		t.Fatalf("model output ran script: window.__xss = %s", xss)
	}
	checks := map[string]string{
		`document.querySelector('#messages img, #messages script, #messages iframe') === null`:          "no img, script or iframe element",
		`[...document.querySelectorAll('#messages a')].every((a) => !a.href.startsWith('javascript:'))`: "no javascript: link",
		`document.querySelector('.msg.assistant strong')?.textContent === 'bold'`:                       "bold text",
		`document.querySelector('.msg.assistant pre code')?.textContent.includes("alert('<b>hi</b>')")`: "a code block",
		`document.querySelectorAll('.msg.assistant .katex').length === 2`:                               "two formulas typeset",
		`document.querySelector('.msg.assistant pre .copy-code') !== null`:                              "a copy button on the code block",
	}
	for cond, what := range checks {
		if !eval[bool](t, ctx, cond) {
			t.Errorf("want %s: %s is false", what, cond)
		}
	}
}

func TestHashMismatchShownOnPage(t *testing.T) {
	m := writeFakeModel(t, 200_000, 200_000)
	s := newTestServer(t, m, true)
	restore := m.corrupt(t, 1)
	ctx := newBrowser(t)
	navigate(t, ctx, s.URL+"/?backend=cpu")

	waitFor(t, ctx, `!document.getElementById('notice').hidden`, 30*time.Second)
	notice := eval[string](t, ctx, `document.getElementById('notice').innerText`)
	if typ := eval[string](t, ctx, `document.getElementById('notice').dataset.type`); typ != "hash-mismatch" ||
		!strings.Contains(notice, m.shards[1].Name) || !strings.Contains(notice, "damaged") {
		t.Fatalf("notice (%s) shows %q, want the damaged shard named", typ, notice)
	}
	if !eval[bool](t, ctx, `document.getElementById('send').disabled`) {
		t.Error("the composer is usable without a model")
	}

	restore()
	click(t, ctx, "#notice-actions button:last-child") // Retry
	waitReady(t, ctx)
	if !eval[bool](t, ctx, `document.getElementById('notice').hidden`) {
		t.Error("the error notice stays after a successful retry")
	}
	if got := ask(t, ctx, "echo:works"); got != "works" {
		t.Errorf("answer after the retry %q", got)
	}
}

func TestDeviceLostReloadsEngine(t *testing.T) {
	m := writeFakeModel(t, 200_000)
	s := newTestServer(t, m, true)
	ctx := newBrowser(t)
	openPage(t, ctx, s)

	ask(t, ctx, "echo:before")
	ask(t, ctx, "lose-device")
	waitFor(t, ctx, `document.getElementById('notice-title').textContent === 'The engine is back'`, 30*time.Second)
	if n := eval[int](t, ctx, `document.querySelectorAll('.msg').length`); n != 4 {
		t.Errorf("%d messages shown after the reload, want the conversation's 4", n)
	}
	if got := ask(t, ctx, "echo:after"); got != "after" {
		t.Errorf("answer after the engine reload %q", got)
	}
	if n := len(s.requests(m.shards[0].Name)); n != 1 {
		t.Errorf("the shard was downloaded %d times, want once (the reload reads it from storage)", n)
	}
}

func TestOfflineReload(t *testing.T) {
	m := writeFakeModel(t, 300_000, 300_000)
	s := newTestServer(t, m, true)
	ctx := newBrowser(t)
	openPage(t, ctx, s)
	waitFor(t, ctx, `navigator.serviceWorker.controller`, 30*time.Second) // the shell is cached
	ask(t, ctx, "echo:online")

	s.Close()
	openPage(t, ctx, s)
	if got := ask(t, ctx, "echo:offline too"); got != "offline too" {
		t.Errorf("offline answer %q", got)
	}
}

// TestScreenshots writes the README's screenshots into $SCREENSHOTS_DIR (skipped without it). The answers
// are scripted in the mock engine: they show how the page renders a normal and a deep-thinking answer.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("SCREENSHOTS_DIR")
	if dir == "" {
		t.Skip("set SCREENSHOTS_DIR to write the screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := writeFakeModel(t, 4<<20, 4<<20, 4<<20)
	s := newTestServer(t, m, true)
	s.throttle = 60 * time.Millisecond
	ctx := newBrowser(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	navigate(t, ctx, s.URL+"/?backend=cpu")
	waitFor(t, ctx, `document.getElementById('load-bar').value > 0.3 * document.getElementById('load-bar').max && /left/.test(document.getElementById('load-numbers').textContent)`, 60*time.Second)
	shot("first-load.png")
	s.mu.Lock()
	s.throttle = 0
	s.mu.Unlock()
	waitReady(t, ctx)

	ask(t, ctx, "Write a Python function that tells whether a number is prime.")
	shot("normal-answer.png")

	click(t, ctx, "#new-chat")
	click(t, ctx, `input[name=mode][value=think]`)
	ask(t, ctx, "What is the sum of the first 10 odd numbers?")
	shot("deep-thinking-answer.png")
}

// loaderState is what the first-load screen showed at one moment.
type loaderState struct {
	Title, Numbers, Detail string
}

// recordLoader makes every page the tab opens from now on log each state of its loader in
// window.loaderLog, so a test can check the whole sequence after the load, however fast it went.
func recordLoader(t *testing.T, ctx context.Context) {
	t.Helper()
	const script = `window.loaderLog = [];
new MutationObserver(() => {
	const text = (id) => document.getElementById(id)?.textContent ?? '';
	if (document.getElementById('loader')?.hidden !== false) return;
	const s = { title: text('load-title'), numbers: text('load-numbers'), detail: text('load-detail') };
	const last = window.loaderLog.at(-1);
	if (!last || last.title !== s.title || last.numbers !== s.numbers || last.detail !== s.detail) window.loaderLog.push(s);
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });`
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		_, err := cdp.Call(ctx, target, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: script})
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
}

// The first-load screen, start to end, on the GPU path (the mock engine spends ten virtual minutes setting
// up and one virtual second per shard): a label while the engine allocates, an upload ETA that leaves the
// set-up out, a shard counter that ends at all of them with none "now", and counts in the singular for one.
func TestLoaderLabels(t *testing.T) {
	const shards = 4
	m := writeFakeModel(t, 200_000, 200_000, 200_000, 200_000)
	s := newTestServer(t, m, true)
	ctx := newBrowser(t)
	recordLoader(t, ctx)
	navigate(t, ctx, s.URL+"/")
	waitReady(t, ctx)
	log := eval[[]loaderState](t, ctx, `window.loaderLog`)
	at := func(title string) (first, last int) {
		first, last = -1, -1
		for i, st := range log {
			if st.Title == title {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		if first < 0 {
			t.Fatalf("the loader never showed %q: %+v", title, log)
		}
		return first, last
	}
	_, verified := at("Checking the stored model…")
	setup, _ := at("Setting up your GPU…")
	upload, end := at("Loading the model onto your GPU")
	if !(verified < setup && setup < upload) {
		t.Errorf("the set-up label must come between the check of the stored model and the upload: %+v", log)
	}
	if d := log[setup].Detail; !strings.Contains(d, "reserving GPU memory for 800 kB of weights") {
		t.Errorf("while the engine allocates the loader says %q", d)
	}
	eta := regexp.MustCompile(`about (.+) left`)
	etas := 0
	for _, st := range log[upload : end+1] {
		if e := eta.FindStringSubmatch(st.Numbers); e != nil {
			etas++
			// one virtual second per shard: at most a few seconds, where counting the set-up gave half an hour
			if !regexp.MustCompile(`^\d+ s$`).MatchString(e[1]) {
				t.Errorf("upload ETA %q includes the set-up time (%q)", e[1], st.Numbers)
			}
		}
	}
	if etas == 0 {
		t.Errorf("no upload state shows an ETA: %+v", log[upload:end+1])
	}
	if got, want := log[end].Detail, fmt.Sprintf("%d of %d shards done", shards, shards); got != want {
		t.Errorf("the upload ends with %q, want %q", got, want)
	}
	for _, st := range log {
		if strings.Contains(st.Detail, fmt.Sprintf("%d of %d shards done · now", shards, shards)) {
			t.Errorf("with every shard done the loader still names one: %q (%s)", st.Detail, st.Title)
		}
	}

	ask(t, ctx, "echo:one")
	if got := eval[string](t, ctx, `[...document.querySelectorAll('.msg.assistant .meta')].at(-1).textContent`); !strings.Contains(got, "1 token ·") {
		t.Errorf("a one-token answer's stats show %q", got)
	}
}

// On a software adapter (headless Chromium's SwiftShader) the page says so while the model is still
// downloading, before the user waits for an answer; the notice stays after the load. The CPU backend
// does not ask for an adapter and shows no such notice.
func TestSoftwareAdapterNotice(t *testing.T) {
	m := writeFakeModel(t, 300_000, 300_000)
	s := newTestServer(t, m, true)
	reached, release := s.holdAt(m.shards[1].Name, 100_000)
	defer release()
	ctx := newBrowser(t)
	navigate(t, ctx, s.URL+"/")
	<-reached
	waitFor(t, ctx, `!document.getElementById('software-gpu').hidden`, 60*time.Second)
	if title := eval[string](t, ctx, `document.getElementById('load-title').textContent`); !strings.HasPrefix(title, "Downloading") {
		t.Errorf("the notice came during %q, want during the download", title)
	}
	text := eval[string](t, ctx, `document.getElementById('software-gpu').textContent`)
	t.Logf("notice: %s", text)
	for _, want := range []string{"emulated in software", "SwiftShader", "very slowly", "hardware acceleration"} {
		if !strings.Contains(strings.ToLower(text), strings.ToLower(want)) {
			t.Errorf("the notice does not say %q: %s", want, text)
		}
	}
	release()
	waitReady(t, ctx)
	if eval[bool](t, ctx, `document.getElementById('software-gpu').hidden`) {
		t.Error("the notice went away after the load")
	}

	openPage(t, ctx, s) // ?backend=cpu
	if !eval[bool](t, ctx, `document.getElementById('software-gpu').hidden`) {
		t.Error("the CPU backend shows the software-GPU notice")
	}
}
