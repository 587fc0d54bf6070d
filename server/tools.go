package server

// Tools and structured output, shared by the OpenAI and Ollama APIs: the request's tools, tool_choice and
// response format become grammars (model/grammar.go) and InternLM3's tool turns.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/ilmweb/ilmweb/model"
)

// toolSpec is one entry of "tools" (OpenAI's shape; Ollama uses the same).
type toolSpec struct {
	Type     string          `json:"type"`
	Function *model.Function `json:"function"`
}

// toolCallJSON is a call in OpenAI's shape: in an assistant message, a response, or a streamed delta.
type toolCallJSON struct {
	Index    *int   `json:"index,omitempty"` // streamed deltas only
	ID       string `json:"id"`
	Type     string `json:"type"` // "function"
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"` // JSON text
	} `json:"function"`
}

// responseFormat is OpenAI's response_format.
type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	} `json:"json_schema"`
}

// toolSetup is what a request's tools change in its generation.
type toolSetup struct {
	system      model.Message // the system turn listing the functions
	actionStart int           // the token opening a call in the answer
}

var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// grammars compiles and remembers the grammars of recent requests (clients repeat their schemas).
type grammars struct {
	once  sync.Once
	vocab *model.Vocab
	mu    sync.Mutex
	byKey map[string]*model.Grammar
}

const maxGrammars = 16

func (gs *grammars) get(m *model.Model, key string, build func(*model.Vocab) (*model.Grammar, error)) (*model.Grammar, error) {
	gs.once.Do(func() { gs.vocab = model.NewVocab(m.Tokenizer, m.Stop) })
	gs.mu.Lock()
	g, ok := gs.byKey[key]
	gs.mu.Unlock()
	if ok {
		return g, nil
	}
	g, err := build(gs.vocab)
	if err != nil {
		return nil, err
	}
	gs.mu.Lock()
	if gs.byKey == nil || len(gs.byKey) >= maxGrammars {
		gs.byKey = map[string]*model.Grammar{}
	}
	gs.byKey[key] = g
	gs.mu.Unlock()
	return g, nil
}

// schemaError is a 400 for a schema the grammar compiler refused, naming the field and the keyword.
func schemaError(param string, err error) *apiError {
	if se, ok := errors.AsType[*model.SchemaError](err); ok {
		return invalid(param, "'%s': %v", param, se)
	}
	return invalid(param, "'%s': %v", param, err)
}

// formatGrammar sets the grammar for a response format: "json_object" (any object) or a JSON Schema.
func (a *API) formatGrammar(g *generation, param string, schema json.RawMessage) *apiError {
	key := "json_object"
	build := func(v *model.Vocab) (*model.Grammar, error) { return model.JSONObjectGrammar(v), nil }
	if schema != nil {
		var buf bytes.Buffer
		if err := json.Compact(&buf, schema); err != nil {
			return invalid(param, "'%s' is not JSON: %v", param, err)
		}
		key = "schema:" + buf.String()
		build = func(v *model.Vocab) (*model.Grammar, error) { return model.SchemaGrammar(v, schema) }
	}
	gr, err := a.grammars.get(a.model, key, build)
	if err != nil {
		return schemaError(param, err)
	}
	g.opts.Grammar = gr
	return nil
}

// useTools checks tools and tool_choice ("none", "auto", "required" or {"type": "function", "function":
// {"name": ...}}) and sets up g: the tools' system turn, <|action_end|> as a stop, and for "required" or a
// named function a grammar that makes the answer a well-formed call.
func (a *API) useTools(g *generation, tools []toolSpec, choice json.RawMessage) *apiError {
	mode, named := "auto", ""
	if len(choice) > 0 && string(choice) != "null" {
		var s string
		var obj struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(choice, &s) == nil:
			if s != "none" && s != "auto" && s != "required" {
				return invalid("tool_choice", "'tool_choice' is %q; it must be 'none', 'auto', 'required' or a named function", s)
			}
			mode = s
		case json.Unmarshal(choice, &obj) == nil && obj.Type == "function" && obj.Function.Name != "":
			mode, named = "named", obj.Function.Name
		default:
			return invalid("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}")
		}
	}
	if len(tools) == 0 {
		if mode == "required" || mode == "named" {
			return invalid("tool_choice", "'tool_choice' asks for a tool call but 'tools' is empty")
		}
		return nil
	}
	tt := a.model.Chat.Tools()
	if tt == nil {
		return invalid("tools", "this model cannot call tools: its tokenizer_config.json has no special tokens <|plugin|>, <|action_start|>, <|action_end|> and <|interpreter|> in added_tokens_decoder")
	}
	var functions []model.Function
	var calls []model.ToolCall
	for i, t := range tools {
		if t.Type != "function" || t.Function == nil {
			return invalid(fmt.Sprintf("tools[%d].type", i), "'tools[%d]' must be {\"type\": \"function\", \"function\": {...}}", i)
		}
		if !toolName.MatchString(t.Function.Name) {
			return invalid(fmt.Sprintf("tools[%d].function.name", i), "'tools[%d].function.name' is %q; it must be 1 to 64 letters, digits, '_' or '-'", i, t.Function.Name)
		}
		if named == "" || named == t.Function.Name {
			calls = append(calls, model.ToolCall{Name: t.Function.Name, Parameters: t.Function.Parameters})
		}
		functions = append(functions, *t.Function)
		// Compile each function's parameters now, so a bad schema is refused whatever tool_choice says.
		param := fmt.Sprintf("tools[%d].function.parameters", i)
		key := "tool:" + t.Function.Name + ":" + string(t.Function.Parameters)
		if _, err := a.grammars.get(a.model, key, func(v *model.Vocab) (*model.Grammar, error) {
			return model.ToolCallGrammar(v, []model.ToolCall{{Name: t.Function.Name, Parameters: t.Function.Parameters}}, tt.ActionStart, tt.Plugin, tt.ActionEnd)
		}); err != nil {
			return schemaError(param, err)
		}
	}
	if mode == "none" {
		return nil
	}
	if named != "" && len(calls) == 0 {
		return invalid("tool_choice", "'tool_choice' names the function %q, which is not in 'tools'", named)
	}
	g.tools = &toolSetup{system: model.ToolsMessage(functions), actionStart: tt.ActionStart}
	g.opts.Stop = append(append([]int(nil), g.opts.Stop...), tt.ActionEnd)
	if mode == "auto" {
		return nil
	}
	key, _ := json.Marshal(calls)
	gr, err := a.grammars.get(a.model, "calls:"+string(key), func(v *model.Vocab) (*model.Grammar, error) {
		return model.ToolCallGrammar(v, calls, tt.ActionStart, tt.Plugin, tt.ActionEnd)
	})
	if err != nil {
		return schemaError("tools", err)
	}
	g.opts.Grammar = gr
	return nil
}

// checkToolTurns refuses tool turns in the conversation when the model has no tool tokens.
func (a *API) checkToolTurns(messages []model.Message) *apiError {
	if a.model.Chat.Tools() != nil {
		return nil
	}
	for i, m := range messages {
		if m.Plugin || len(m.Calls) > 0 {
			return invalid(fmt.Sprintf("messages[%d]", i), "'messages[%d]' is a tool call or result, but this model cannot call tools (its tokenizer has no <|plugin|> and <|action_start|> special tokens)", i)
		}
	}
	return nil
}

// toolCalls is the answer's call in OpenAI's shape, or nil when it made none.
func (j *job) toolCalls() []toolCallJSON {
	if !j.inCall {
		return nil
	}
	name, args, ok := model.ParseCall(j.call)
	if !ok {
		return nil
	}
	var c toolCallJSON
	c.ID, c.Type = "call_"+randomID(), "function"
	c.Function.Name, c.Function.Arguments = name, string(args)
	return []toolCallJSON{c}
}

// unparsedCall is the text of a call the model started but did not write well (tool_choice auto only):
// it is given back as content rather than lost.
func (j *job) unparsedCall() string {
	if j.inCall && j.toolCalls() == nil {
		return j.call
	}
	return ""
}
