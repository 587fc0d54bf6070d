package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb"
	"github.com/ilmweb/ilmweb/model"
)

const weatherTools = `[
	{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
		"parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}}},
	{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a", "b"], "additionalProperties": false}}}
]`

func validator(t *testing.T, schema string) *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("s.json", doc))
	s, err := c.Compile("s.json")
	require.NoError(t, err)
	return s
}

func validates(t *testing.T, s *jsonschema.Schema, text, what string) {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	require.NoError(t, err, what)
	require.NoError(t, s.Validate(inst), what)
}

// Forced tool calls always name a declared function with parameters valid for its schema, whole and
// streamed, and the call goes back into the conversation with the tool's result.
func TestChatToolCalls(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	var tools []toolSpec
	require.NoError(t, json.Unmarshal([]byte(weatherTools), &tools))
	params := map[string]*jsonschema.Schema{}
	for _, tl := range tools {
		params[tl.Function.Name] = validator(t, string(tl.Function.Parameters))
	}
	for seed := range 12 {
		choice := `"required"`
		if seed%3 == 2 {
			choice = `{"type": "function", "function": {"name": "add"}}`
		}
		body := fmt.Sprintf(`{"messages": [`+sys+`{"role": "user", "content": "Weather in Paris?"}], "tools": %s, "tool_choice": %s, "seed": %d, "max_tokens": 60, "stream": %v}`,
			weatherTools, choice, seed, seed%2 == 1)
		var calls []toolCallJSON
		var finish string
		if seed%2 == 1 {
			resp, data := fx.post(t, body)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
			s := readStream(t, bytes.NewReader(data))
			finish = s.finish
			for _, chunk := range s.chunks {
				var c struct {
					Choices []struct {
						Delta struct {
							ToolCalls []toolCallJSON `json:"tool_calls"`
						} `json:"delta"`
					} `json:"choices"`
				}
				b, _ := json.Marshal(chunk)
				require.NoError(t, json.Unmarshal(b, &c))
				for _, ch := range c.Choices {
					for _, tc := range ch.Delta.ToolCalls {
						require.NotNil(t, tc.Index)
						calls = append(calls, tc)
					}
				}
			}
		} else {
			resp, data := fx.post(t, body)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
			var c struct {
				Choices []struct {
					Message      responseMessage `json:"message"`
					FinishReason string          `json:"finish_reason"`
				} `json:"choices"`
			}
			require.NoError(t, json.Unmarshal(data, &c))
			calls, finish = c.Choices[0].Message.ToolCalls, c.Choices[0].FinishReason
			require.Nil(t, c.Choices[0].Message.Content, string(data))
		}
		what := fmt.Sprintf("seed %d: %+v", seed, calls)
		require.Equal(t, "tool_calls", finish, what)
		require.Len(t, calls, 1, what)
		call := calls[0]
		require.Equal(t, "function", call.Type)
		require.True(t, strings.HasPrefix(call.ID, "call_"))
		require.Contains(t, params, call.Function.Name, what)
		if seed%3 == 2 {
			require.Equal(t, "add", call.Function.Name)
		}
		validates(t, params[call.Function.Name], call.Function.Arguments, what)

		// The round trip: the call and the tool's result come back as InternLM3's turns.
		callJSON, _ := json.Marshal([]toolCallJSON{call})
		follow := fmt.Sprintf(`{"messages": [`+sys+`{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": null, "tool_calls": %s},
			{"role": "tool", "tool_call_id": %q, "content": "{\"temp\": 21}"}], "tools": %s, "tool_choice": "none", "max_tokens": 4, "seed": 1}`,
			callJSON, call.ID, weatherTools)
		resp, data := fx.post(t, follow)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
	}
}

func TestToolTurnsRendering(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	var req chatRequest
	require.NoError(t, json.Unmarshal([]byte(`{"messages": [{"role": "user", "content": "hi <|action_start|><|plugin|>"},
		{"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}]},
		{"role": "tool", "tool_call_id": "call_1", "content": "3"}], "tools": `+weatherTools+`}`), &req))
	g, aerr := req.validate(fx.api.cfg.ModelID, fx.m.Stop)
	require.Nil(t, aerr)
	require.Nil(t, fx.api.constrain(&req, g))
	tt := fx.m.Chat.Tools()
	require.Contains(t, g.opts.Stop, tt.ActionEnd, "<|action_end|> ends the answer while tools are on")
	ids := fx.api.prompt(g)
	tok := fx.m.Tokenizer
	var sb strings.Builder
	for _, id := range ids {
		switch id {
		case tt.Plugin:
			sb.WriteString("<|plugin|>")
		case tt.ActionStart:
			sb.WriteString("<|action_start|>")
		case tt.ActionEnd:
			sb.WriteString("<|action_end|>")
		case fx.m.Chat.EndOfTurn():
			sb.WriteString("<|im_end|>")
		default:
			if tok.IsSpecial(id) {
				sb.WriteString("<" + tok.Piece(id) + ">")
			} else {
				sb.WriteString(tok.Decode([]int{id}))
			}
		}
	}
	text := sb.String()
	list, _ := json.Marshal([]model.Function{*tools(t)[0].Function, *tools(t)[1].Function})
	require.Contains(t, text, "system name=<|plugin|>\n"+string(list)+"<|im_end|>\n")
	require.Contains(t, text, "assistant\n<|action_start|><|plugin|>\n{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}<|action_end|><|im_end|>\n")
	require.Contains(t, text, "environment name=<|plugin|>\n3<|im_end|>\n")
	starts := 0
	for _, id := range ids {
		if id == tt.ActionStart {
			starts++
		}
	}
	require.Equal(t, 1, starts, "the markers a user types stay text")
}

func tools(t *testing.T) []toolSpec {
	var ts []toolSpec
	require.NoError(t, json.Unmarshal([]byte(weatherTools), &ts))
	return ts
}

// A model whose tokenizer lacks the tool tokens refuses tools and tool turns.
func TestToolsNeedPluginTokens(t *testing.T) {
	m := *tinyModel(t)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(ilmweb.TinyTokenizerConfig, &cfg))
	dec := cfg["added_tokens_decoder"].(map[string]any)
	for id, v := range dec {
		if strings.Contains(v.(map[string]any)["content"].(string), "action") {
			delete(dec, id)
		}
	}
	data, _ := json.Marshal(cfg)
	tok, err := model.NewTokenizer("tokenizer.model", ilmweb.TinyTokenizerModel, "tokenizer_config.json", data)
	require.NoError(t, err)
	chat, err := model.NewChatFormat(tok)
	require.NoError(t, err)
	require.Nil(t, chat.Tools())
	m.Tokenizer, m.Chat = tok, chat
	api, err := NewAPI(APIConfig{Model: &m, ContextLen: testCtx})
	require.NoError(t, err)
	srv := httptest.NewServer(api)
	defer srv.Close()
	for body, param := range map[string]string{
		`{"messages": [{"role": "user", "content": "hi"}], "tools": ` + weatherTools + `}`:    "tools",
		`{"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "3"}]}`: "messages[1]",
	} {
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		var e struct {
			Error apiError `json:"error"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Equal(t, param, *e.Error.Param)
		require.Contains(t, e.Error.Message, "cannot call tools")
	}
}

// response_format json_schema: every sampled answer validates.
func TestChatResponseFormat(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	schema := `{"type": "object", "properties": {"answer": {"type": "string", "maxLength": 8}, "n": {"type": "integer", "minimum": 1, "maximum": 3}}, "required": ["answer", "n"]}`
	v := validator(t, schema)
	for seed := range 6 {
		format := `{"type": "json_schema", "json_schema": {"name": "a", "strict": true, "schema": ` + schema + `}}`
		want := v
		if seed%3 == 0 {
			format, want = `{"type": "json_object"}`, validator(t, `{"type": "object"}`)
		}
		body := fmt.Sprintf(`{"messages": [`+sys+`{"role": "user", "content": "JSON please"}], "response_format": %s, "seed": %d, "max_tokens": 40, "stream": %v}`, format, seed, seed%2 == 1)
		resp, data := fx.post(t, body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(data))
		var text string
		if seed%2 == 1 {
			text = readStream(t, bytes.NewReader(data)).text
		} else {
			text = decodeCompletion(t, resp, data).Choices[0].Message.Content
		}
		validates(t, want, text, fmt.Sprintf("seed %d: %q", seed, text))
	}
}
