package server

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Fields this engine would otherwise ignore, and JSON encoding/json reads loosely: each a 400 naming the
// field or key (issue 13). tool_choice is supported with tools (tools_test.go).
func TestChatRefusesWhatItWouldIgnore(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	user := `"messages": [{"role": "user", "content": "Hi"}]`
	for _, c := range []struct {
		name, body, param, contains string
	}{
		{"functions", `{` + user + `, "functions": [{"name": "f", "parameters": {}}]}`, "functions", "'functions'"},
		{"function_call", `{` + user + `, "function_call": "auto"}`, "function_call", "'function_call'"},
		{"top_logprobs", `{` + user + `, "top_logprobs": 5}`, "top_logprobs", "'top_logprobs' is not supported"},
		{"duplicate key", `{` + user + `, "max_tokens": 5, "max_tokens": 1000}`, "max_tokens", `duplicate key "max_tokens" in the request`},
		{"duplicate nested key", `{"messages": [{"role": "user", "role": "system", "content": "Hi"}]}`, "messages[0].role",
			`duplicate key "role" in the request.messages[0]`},
		{"case-folded key", `{` + user + `, "MAX_TOKENS": 5}`, "MAX_TOKENS", `key "MAX_TOKENS" in the request: keys are case-sensitive, the field is "max_tokens"`},
		{"case-folded nested key", `{"messages": [{"Role": "user", "content": "Hi"}]}`, "messages[0].Role", `the field is "role"`},
		{"case-folded content part key", `{"messages": [{"role": "user", "content": [{"type": "text", "TEXT": "Hi"}]}]}`, "messages[0].content",
			`key "TEXT" in content[0]: keys are case-sensitive, the field is "text"`},
		{"case-folded option", `{` + user + `, "stream": true, "stream_options": {"Include_Usage": true}}`, "stream_options.Include_Usage", `the field is "include_usage"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, data := fx.post(t, c.body)
			require.Equal(t, 400, resp.StatusCode, string(data))
			e := requireErrorJSON(t, resp, data)
			require.Equal(t, c.param, e["param"])
			require.Contains(t, e["message"], c.contains)
		})
	}

	// What stays accepted: null for the refused fields, unknown fields that change nothing.
	for _, body := range []string{
		`{` + user + `, "max_tokens": 1, "tool_choice": null, "functions": null, "top_logprobs": null}`,
		`{` + user + `, "max_tokens": 1, "user": "u1", "metadata": {"a": "b"}, "Store": false}`,
	} {
		resp, data := fx.post(t, body)
		require.Equal(t, 200, resp.StatusCode, string(data))
	}
}
