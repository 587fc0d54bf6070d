package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// Constrained decoding through the page's JS API (web/engine.js → wasm/main.go, CPU backend): every
// sampled answer under response_format validates against its schema, a forced tool call names the
// function with valid arguments and goes back with its result, and a schema keyword the engine does not
// support is refused by name.
func TestWasmEngineConstrained(t *testing.T) {
	engineReady(t)
	modelDir := tinyModel(t)
	s := newTestServer(t, &fakeModel{dir: modelDir}, false)
	ctx := newBrowser(t)
	navigate(t, ctx, s.URL+"/test/harness.html")
	waitFor(t, ctx, `window.harnessReady`, 30*time.Second)
	loaded := eval[map[string]any](t, ctx, `window.load()`)
	require.Equal(t, true, loaded["ok"], "%v", loaded)

	schema := `{"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer", "minimum": 0, "maximum": 120}, "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2}}, "required": ["name", "age"], "additionalProperties": false}`
	for _, c := range []struct {
		format, validates string
	}{
		{`{type: 'json_schema', json_schema: {name: 'person', schema: ` + schema + `}}`, schema},
		{`{type: 'json_object'}`, `{"type": "object"}`},
	} {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(c.validates))
		require.NoError(t, err)
		compiler := jsonschema.NewCompiler()
		require.NoError(t, compiler.AddResource("s.json", doc))
		v, err := compiler.Compile("s.json")
		require.NoError(t, err)
		for seed := range 3 {
			text := eval[string](t, ctx, `window.chat([{role: 'user', content: 'Who are you? Answer in JSON.'}],
				{seed: `+string(rune('0'+seed))+`, max_tokens: 40, response_format: `+c.format+`})
				.then((chunks) => chunks.map((ch) => ch.choices[0]?.delta?.content ?? '').join(''))`)
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
			require.NoError(t, err, "seed %d: %q", seed, text)
			require.NoError(t, v.Validate(inst), "seed %d: %q", seed, text)
			t.Logf("%s, seed %d: %s", c.format[:20], seed, text)
		}
	}

	// A forced tool call, then its result sent back.
	tools := `[{type: 'function', function: {name: 'add', parameters: {type: 'object', properties: {a: {type: 'integer', minimum: 0, maximum: 9}, b: {type: 'integer'}}, required: ['a', 'b']}}}]`
	call := eval[map[string]any](t, ctx, `window.engine.chat.completions.create({messages: [{role: 'user', content: 'Add 2 and 3.'}],
		tools: `+tools+`, tool_choice: 'required', seed: 1, max_tokens: 80}).then((r) => ({finish: r.choices[0].finish_reason, message: r.choices[0].message}))`)
	require.Equal(t, "tool_calls", call["finish"], "%v", call)
	message := call["message"].(map[string]any)
	calls := message["tool_calls"].([]any)
	require.Len(t, calls, 1)
	fn := calls[0].(map[string]any)["function"].(map[string]any)
	require.Equal(t, "add", fn["name"])
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(`{"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}, "b": {"type": "integer"}}, "required": ["a", "b"]}`))
	require.NoError(t, err)
	compiler := jsonschema.NewCompiler()
	require.NoError(t, compiler.AddResource("add.json", doc))
	params, err := compiler.Compile("add.json")
	require.NoError(t, err)
	args, err := jsonschema.UnmarshalJSON(strings.NewReader(fn["arguments"].(string)))
	require.NoError(t, err)
	require.NoError(t, params.Validate(args), fn["arguments"])
	reply := eval[string](t, ctx, `(async () => {
		const first = await window.engine.chat.completions.create({messages: [{role: 'user', content: 'Add 2 and 3.'}], tools: `+tools+`, tool_choice: 'required', seed: 1, max_tokens: 80});
		const r = await window.engine.chat.completions.create({messages: [{role: 'user', content: 'Add 2 and 3.'}, first.choices[0].message,
			{role: 'tool', content: '5'}], tools: `+tools+`, max_tokens: 4});
		return r.choices[0].finish_reason;
	})()`)
	require.Contains(t, []string{"stop", "length"}, reply)

	refused := eval[map[string]any](t, ctx, `window.chat([{role: 'user', content: 'Hi'}],
		{response_format: {type: 'json_schema', json_schema: {schema: {type: 'string', pattern: 'a+'}}}})
		.then(() => ({}), (err) => ({type: err.type, message: err.message}))`)
	require.Equal(t, "invalid-request", refused["type"])
	require.Contains(t, refused["message"], "JSON Schema keyword 'pattern'")
}
