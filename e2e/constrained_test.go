package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// Constrained decoding through the page's JS API (web/engine.js → wasm/main.go, CPU backend): every
// sampled answer under response_format validates against its schema, and a schema keyword the engine
// does not support is refused by name.
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

	refused := eval[map[string]any](t, ctx, `window.chat([{role: 'user', content: 'Hi'}],
		{response_format: {type: 'json_schema', json_schema: {schema: {type: 'string', pattern: 'a+'}}}})
		.then(() => ({}), (err) => ({type: err.type, message: err.message}))`)
	require.Equal(t, "invalid-request", refused["type"])
	require.Contains(t, refused["message"], "JSON Schema keyword 'pattern'")
}
