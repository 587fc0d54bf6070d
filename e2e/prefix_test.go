package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// The prompt's prefill, seen and stopped (onPrefill, the page's "reading your message"), and the system
// prompt's KV cache kept in storage across reloads, verified before use (web/worker.js, wasm/main.go).

// longContextModel is the tiny model with max_position_embeddings 2048: at tiny's own 128 every chat
// (the official system prompt is 278 tokens in its tokenizer) runs past it, in dynamic NTK, where a
// prompt is prefilled in one call and a stored prefix is not used.
func longContextModel(t *testing.T) string {
	t.Helper()
	return tinyModel(t, "-max-position", "2048")
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	PrefilledTokens  int `json:"prefilled_tokens"`
	RestoredTokens   int `json:"restored_tokens"`
}

type prefillEvent struct {
	Done            int     `json:"done"`
	Total           int     `json:"total"`
	TokensPerSecond float64 `json:"tokensPerSecond"`
}

// longMessage is about 700 tokens in the tiny model's tokenizer: with the system prompt, within its 2048 positions.
var longMessage = strings.Repeat("Tell me about the weather in spring, and why the sky is blue. ", 20)

func TestPrefillProgressAndStop(t *testing.T) {
	engineReady(t)
	s := newTestServer(t, &fakeModel{dir: longContextModel(t)}, false)
	ctx := openHarness(t, s)
	res := eval[loadResult](t, ctx, `load({prefillChunk: 1})`)
	require.True(t, res.OK, "%+v", res)

	// Stopped after the fifth chunk of a prefill of about a thousand tokens.
	type run struct {
		Events []prefillEvent `json:"events"`
		Finish string         `json:"finish"`
		Usage  usage          `json:"usage"`
		Text   string         `json:"text"`
	}
	got := eval[run](t, ctx, `(async () => {
		const events = [];
		const controller = new AbortController();
		const chunks = [];
		for await (const c of engine.chat.completions.create({messages: [{role: 'user', content: `+jsString(longMessage)+`}],
			stream: true, temperature: 0, max_tokens: 4, signal: controller.signal,
			onPrefill: (p) => { events.push(p); if (events.length === 5) controller.abort(); }})) chunks.push(c);
		const last = chunks.at(-1);
		return {events, finish: last.choices[0].finish_reason, usage: last.usage,
			text: chunks.map((c) => c.choices[0].delta.content ?? '').join('')};
	})()`)
	require.Equal(t, "abort", got.Finish, "usage %+v, %d prefill events", got.Usage, len(got.Events))
	require.Empty(t, got.Text)
	require.Zero(t, got.Usage.CompletionTokens)
	n := got.Usage.PromptTokens
	require.Greater(t, n, 900)
	require.Less(t, n, 2048)
	require.GreaterOrEqual(t, len(got.Events), 5)
	require.Less(t, len(got.Events), n/2, "the stop must end the prefill, not wait for it")
	for i, e := range got.Events {
		require.Equal(t, prefillEvent{Done: i + 1, Total: n, TokensPerSecond: e.TokensPerSecond}, e)
		require.Greater(t, e.TokensPerSecond, 0.0)
	}
	t.Logf("stopped after %d of %d prefill chunks of 1 token (%.0f tok/s)", len(got.Events), n, got.Events[len(got.Events)-1].TokensPerSecond)

	// Unstopped, with the default chunk: the events end at the whole prompt, then the answer comes.
	got = eval[run](t, ctx, `(async () => {
		await load();
		const events = [];
		const chunks = await window.chat([{role: 'user', content: `+jsString(longMessage)+`}],
			{temperature: 0, max_tokens: 4, onPrefill: (p) => events.push(p)});
		const last = chunks.at(-1);
		return {events, finish: last.choices[0].finish_reason, usage: last.usage};
	})()`)
	require.Equal(t, "length", got.Finish)
	require.Len(t, got.Events, (got.Usage.PrefilledTokens+31)/32)
	require.Equal(t, prefillEvent{Done: n, Total: n, TokensPerSecond: got.Events[len(got.Events)-1].TokensPerSecond}, got.Events[len(got.Events)-1])

	// The page shows the prefill moving, and its stop button ends it.
	navigate(t, ctx, s.URL+"/?backend=cpu&prefill-chunk=1")
	waitReady(t, ctx)
	eval[bool](t, ctx, `(document.getElementById('prompt').value = `+jsString(longMessage+" (page)")+`, document.getElementById('composer').requestSubmit(), true)`)
	waitFor(t, ctx, `/^reading your message: [1-9]\d* \/ \d+ tokens \(\d+(\.\d)? tok\/s\)$/.test(document.querySelector('.msg.streaming .meta .prefill')?.textContent ?? '')`, 60*time.Second)
	shown := eval[string](t, ctx, `document.querySelector('.msg.streaming .meta .prefill').textContent`)
	click(t, ctx, "#stop")
	waitFor(t, ctx, `!document.querySelector('.msg.streaming')`, 30*time.Second)
	msgs := storedMessages(t, ctx)
	last := msgs[len(msgs)-1]
	require.NotNil(t, last.Stats)
	require.Equal(t, "abort", last.Stats.FinishReason)
	require.Empty(t, last.Content)
	t.Logf("page showed %q, then stopped", shown)
}

// After a reload, a new chat loads the system prompt's KV cache from storage and prefills only the user's
// turn, answering exactly as without it; a damaged stored cache is detected, recomputed and replaced.
func TestStoredSystemPromptKV(t *testing.T) {
	engineReady(t)
	dir := longContextModel(t)
	tok, err := model.LoadTokenizerOnly(dir)
	require.NoError(t, err)
	systemTurn := len(tok.Chat.Encode(model.WithSystemPrompt(nil, false), false))
	s := newTestServer(t, &fakeModel{dir: dir}, false)

	for _, backend := range []string{"cpu", "webgpu"} {
		t.Run(backend, func(t *testing.T) {
			ctx := openHarness(t, s)
			type answer struct {
				Text  string `json:"text"`
				Usage usage  `json:"usage"`
			}
			// ask reloads the harness (a new page: a new worker and engine) and asks the same question greedily.
			ask := func(t *testing.T) answer {
				t.Helper()
				navigate(t, ctx, s.URL+"/test/harness.html")
				waitFor(t, ctx, `window.harnessReady`, 10*time.Second)
				res := eval[loadResult](t, ctx, `load({backend: '`+backend+`'})`)
				require.True(t, res.OK, "%+v", res)
				return eval[answer](t, ctx, `window.chat([{role: 'user', content: 'What is the capital of France?'}], {temperature: 0, max_tokens: 16})
					.then((chunks) => ({text: chunks.map((c) => c.choices[0].delta.content ?? '').join(''), usage: chunks.at(-1).usage}))`)
			}
			kvEntries := func() int {
				return eval[int](t, ctx, `caches.open('ilmweb-kv-v1').then((c) => c.keys()).then((k) => k.length)`)
			}
			eval[bool](t, ctx, `caches.delete('ilmweb-kv-v1').then(() => true)`)

			fresh := ask(t)
			require.Zero(t, fresh.Usage.RestoredTokens)
			require.Equal(t, fresh.Usage.PromptTokens, fresh.Usage.PrefilledTokens)
			require.NotEmpty(t, fresh.Text)
			require.Equal(t, 1, kvEntries(), "the system prompt's KV cache is stored after the first answer")

			restored := ask(t)
			require.Equal(t, systemTurn, restored.Usage.RestoredTokens, "the whole system turn comes from storage")
			require.Equal(t, fresh.Usage.PromptTokens, restored.Usage.PromptTokens)
			require.Equal(t, fresh.Usage.PromptTokens-systemTurn, restored.Usage.PrefilledTokens, "only the user's turn is prefilled")
			require.Equal(t, fresh.Text, restored.Text, "the greedy answer must not change")
			t.Logf("%s: reloaded, prefilled %d of %d prompt tokens (%d from storage); answer %q", backend,
				restored.Usage.PrefilledTokens, restored.Usage.PromptTokens, restored.Usage.RestoredTokens, restored.Text)

			// A flipped byte in the stored blob: detected, recomputed, same answer, and replaced.
			eval[bool](t, ctx, `(async () => {
				const c = await caches.open('ilmweb-kv-v1');
				const [req] = await c.keys();
				const b = new Uint8Array(await (await c.match(req)).arrayBuffer());
				b[b.length >> 1] ^= 0x40;
				await c.put(req, new Response(b));
				return true;
			})()`)
			damaged := ask(t)
			require.Zero(t, damaged.Usage.RestoredTokens)
			require.Equal(t, damaged.Usage.PromptTokens, damaged.Usage.PrefilledTokens)
			require.Equal(t, fresh.Text, damaged.Text)
			again := ask(t)
			require.Equal(t, systemTurn, again.Usage.RestoredTokens, "the recomputed cache replaced the damaged one")
			require.Equal(t, fresh.Text, again.Text)
			require.Equal(t, 1, kvEntries())
		})
	}
}
