package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
