package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"

	"github.com/ilmweb/ilmweb/internal/strictjson"
	"github.com/ilmweb/ilmweb/model"
)

// OpenAI's chat completions wire format: the subset this engine honours, plus LMDeploy's top_k and
// repetition_penalty. Fields a client may send that change nothing (user, metadata, …) are ignored;
// fields asking for something this engine cannot do (n > 1, logprobs, penalties) are refused rather than
// silently dropped. tools, tool_choice and response_format are in tools.go.

type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`
	RepetitionPenalty   *float64        `json:"repetition_penalty"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stop                json.RawMessage `json:"stop"` // a string or a list of strings
	Seed                *int64          `json:"seed"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N                *int            `json:"n"`
	Logprobs         bool            `json:"logprobs"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	LogitBias        map[string]any  `json:"logit_bias"`
	Tools            []toolSpec      `json:"tools"`
	ToolChoice       json.RawMessage `json:"tool_choice"`
	ResponseFormat   *responseFormat `json:"response_format"`
	Functions        json.RawMessage `json:"functions"`     // the legacy form of tools
	FunctionCall     json.RawMessage `json:"function_call"` // the legacy form of tool_choice
	TopLogprobs      json.RawMessage `json:"top_logprobs"`
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"` // a string, or a list of {"type":"text","text":…} parts
	ToolCalls  []toolCallJSON  `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

// Limits on a request, beyond the body size.
const (
	maxMessages     = 1024
	maxContentBytes = 256 << 10 // per message; the context limit usually bites long before
	maxStops        = 16
)

// generation is a validated request, ready for the engine.
type generation struct {
	messages     []model.Message
	opts         model.GenerateOptions
	stops        []string
	stream       bool
	includeUsage bool
	tools        *toolSetup // nil: no tools offered
}

// apiError is an error in OpenAI's shape, with the HTTP status it goes out with.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func newError(status int, typ, code, param, format string, args ...any) *apiError {
	e := &apiError{Status: status, Message: fmt.Sprintf(format, args...), Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

// invalid is a 400 naming the offending field.
func invalid(param, format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, "invalid_request_error", "invalid_value", param, format, args...)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(struct {
		Error *apiError `json:"error"`
	}{e})
}

// decodeRequest reads the JSON body (at most limit bytes).
func decodeRequest(w http.ResponseWriter, r *http.Request, limit int64) (*chatRequest, *apiError) {
	body, aerr := readBody(w, r, limit)
	if aerr != nil {
		return nil, aerr
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
			return nil, invalid(te.Field, "invalid type for '%s': expected %s, got %s", te.Field, te.Type, te.Value)
		}
		return nil, invalid("", "the request body is not valid JSON: %v", err)
	}
	// encoding/json took a repeated key's last value and matched keys whatever their case: refuse both.
	if err := strictjson.Check("the request", body, reflect.TypeFor[chatRequest]()); err != nil {
		param := ""
		if ke, ok := errors.AsType[*strictjson.KeyError](err); ok {
			param = ke.Param()
		}
		return nil, invalid(param, "%v", err)
	}
	return &req, nil
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	tooLarge := newError(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "",
		"the request body is over the limit of %d bytes", limit)
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, newError(http.StatusRequestTimeout, "invalid_request_error", "request_timeout", "",
				"the request body did not arrive within %s", bodyTimeout)
		}
		return nil, invalid("", "could not read the request body: %v", err)
	}
	return body, nil
}

// validate checks req against the model and turns it into a generation; defaults are MODEL.md's.
func (req *chatRequest) validate(modelID string, stop []int) (*generation, *apiError) {
	if req.Model != "" && req.Model != modelID {
		return nil, newError(http.StatusNotFound, "invalid_request_error", "model_not_found", "model",
			"the model '%s' does not exist; this server has '%s'", req.Model, modelID)
	}
	g := &generation{stream: req.Stream, opts: model.GenerateOptions{MaxTokens: 1024, Stop: stop, Sampling: model.DefaultSampling()}}
	if req.Messages == nil {
		return nil, invalid("messages", "missing required parameter: 'messages'")
	}
	if len(req.Messages) == 0 {
		return nil, invalid("messages", "'messages' must hold at least one message")
	}
	if len(req.Messages) > maxMessages {
		return nil, invalid("messages", "'messages' holds %d messages, over the limit of %d", len(req.Messages), maxMessages)
	}
	for i, m := range req.Messages {
		msg, err := m.toModel(i)
		if err != nil {
			return nil, err
		}
		g.messages = append(g.messages, msg)
	}

	s := &g.opts.Sampling
	if v := req.Temperature; v != nil {
		if *v < 0 || *v > 2 {
			return nil, invalid("temperature", "'temperature' is %g; it must be between 0 and 2", *v)
		}
		s.Temperature = *v
	}
	if v := req.TopP; v != nil {
		if *v <= 0 || *v > 1 {
			return nil, invalid("top_p", "'top_p' is %g; it must be greater than 0 and at most 1", *v)
		}
		s.TopP = *v
	}
	if v := req.TopK; v != nil {
		if *v < -1 {
			return nil, invalid("top_k", "'top_k' is %d; it must be at least 0 (0 or -1 disable it)", *v)
		}
		s.TopK = max(*v, 0)
	}
	if v := req.RepetitionPenalty; v != nil {
		if *v <= 0 {
			return nil, invalid("repetition_penalty", "'repetition_penalty' is %g; it must be greater than 0 (1 disables it)", *v)
		}
		s.RepetitionPenalty = *v
	}
	if req.Seed != nil {
		s.Seed = uint64(*req.Seed)
	} else {
		s.Seed = randomSeed()
	}
	for _, mt := range []struct {
		name string
		v    *int
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if mt.v == nil {
			continue
		}
		if *mt.v < 1 {
			return nil, invalid(mt.name, "'%s' is %d; it must be at least 1", mt.name, *mt.v)
		}
		g.opts.MaxTokens = *mt.v // max_completion_tokens, OpenAI's newer name, wins when both are sent
	}
	stops, err := parseStop(req.Stop)
	if err != nil {
		return nil, err
	}
	g.stops = stops
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, invalid("stream_options", "'stream_options' is only allowed with 'stream': true")
		}
		g.includeUsage = req.StreamOptions.IncludeUsage
	}

	switch {
	case req.N != nil && *req.N != 1:
		return nil, invalid("n", "'n' is %d; this server generates one choice per request (n must be 1)", *req.N)
	case req.Logprobs:
		return nil, invalid("logprobs", "'logprobs' is not supported")
	case req.FrequencyPenalty != nil && *req.FrequencyPenalty != 0:
		return nil, invalid("frequency_penalty", "'frequency_penalty' is not supported; use 'repetition_penalty'")
	case req.PresencePenalty != nil && *req.PresencePenalty != 0:
		return nil, invalid("presence_penalty", "'presence_penalty' is not supported; use 'repetition_penalty'")
	case len(req.LogitBias) > 0:
		return nil, invalid("logit_bias", "'logit_bias' is not supported")
	case given(req.Functions):
		return nil, invalid("functions", "'functions' (legacy function calling) is not supported; use 'tools'")
	case given(req.FunctionCall):
		return nil, invalid("function_call", "'function_call' (legacy function calling) is not supported; use 'tool_choice'")
	case given(req.TopLogprobs):
		return nil, invalid("top_logprobs", "'top_logprobs' is not supported (nor is 'logprobs')")
	}
	return g, nil
}

// given reports whether an optional field was sent with a value other than null.
func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// constrain applies the request's response_format, tools and tool_choice to g.
func (a *API) constrain(req *chatRequest, g *generation) *apiError {
	if aerr := a.checkToolTurns(g.messages); aerr != nil {
		return aerr
	}
	if f := req.ResponseFormat; f != nil {
		switch f.Type {
		case "", "text":
		case "json_object":
			if aerr := a.formatGrammar(g, "response_format", nil); aerr != nil {
				return aerr
			}
		case "json_schema":
			if f.JSONSchema == nil || len(f.JSONSchema.Schema) == 0 {
				return invalid("response_format.json_schema.schema", "missing required parameter: 'response_format.json_schema.schema'")
			}
			if aerr := a.formatGrammar(g, "response_format.json_schema.schema", f.JSONSchema.Schema); aerr != nil {
				return aerr
			}
		default:
			return invalid("response_format.type", "'response_format.type' is '%s'; it must be 'text', 'json_object' or 'json_schema'", f.Type)
		}
	}
	return a.useTools(g, req.Tools, req.ToolChoice)
}

// toModel checks one message. "developer" is OpenAI's newer name for the system role.
func (m chatMessage) toModel(i int) (model.Message, *apiError) {
	field := func(name string) string { return fmt.Sprintf("messages[%d].%s", i, name) }
	role := m.Role
	plugin := false
	switch role {
	case "system", "user", "assistant":
	case "developer":
		role = "system"
	case "tool": // a tool's result: InternLM3's environment turn
		role, plugin = "environment", true
	case "":
		return model.Message{}, invalid(field("role"), "missing required parameter: '%s'", field("role"))
	default:
		return model.Message{}, invalid(field("role"), "'%s' is %q; it must be 'system', 'developer', 'user', 'assistant' or 'tool'", field("role"), m.Role)
	}
	var calls []string
	if len(m.ToolCalls) > 0 && role != "assistant" {
		return model.Message{}, invalid(field("tool_calls"), "'%s': only assistant messages have tool calls", field("tool_calls"))
	}
	for k, c := range m.ToolCalls {
		f := func(name string) string { return fmt.Sprintf("%s[%d].%s", field("tool_calls"), k, name) }
		if c.Type != "function" || !toolName.MatchString(c.Function.Name) {
			return model.Message{}, invalid(f("function.name"), "'%s' must be a function call with a name of 1 to 64 letters, digits, '_' or '-'", f("function.name"))
		}
		var args json.RawMessage
		if json.Unmarshal([]byte(c.Function.Arguments), &args) != nil || args[0] != '{' {
			return model.Message{}, invalid(f("function.arguments"), "'%s' must be a JSON object in a string", f("function.arguments"))
		}
		calls = append(calls, model.CallText(c.Function.Name, args))
	}
	content, err := parseContent(m.Content, role == "assistant")
	if err != "" {
		return model.Message{}, invalid(field("content"), "'%s' %s", field("content"), err)
	}
	if len(content) > maxContentBytes {
		return model.Message{}, newError(http.StatusBadRequest, "invalid_request_error", "string_above_max_length", field("content"),
			"'%s' is %d bytes long, over the limit of %d", field("content"), len(content), maxContentBytes)
	}
	return model.Message{Role: role, Content: content, Plugin: plugin, Calls: calls}, nil
}

// parseContent accepts a string or a list of text parts (joined with newlines); null only where allowed.
// It returns what is wrong, or "".
func parseContent(raw json.RawMessage, nullOK bool) (string, string) {
	if len(raw) == 0 || string(raw) == "null" {
		if nullOK {
			return "", ""
		}
		return "", "is missing; it must be a string or a list of text parts"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, ""
	}
	var parts []textPart
	if json.Unmarshal(raw, &parts) != nil {
		return "", "must be a string or a list of text parts"
	}
	if err := strictjson.Check("content", raw, reflect.TypeFor[[]textPart]()); err != nil {
		return "", err.Error()
	}
	texts := make([]string, len(parts))
	for j, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", fmt.Sprintf("has a part of type %q; only text parts ({\"type\": \"text\", \"text\": ...}) are supported", p.Type)
		}
		texts[j] = *p.Text
	}
	return strings.Join(texts, "\n"), ""
}

type textPart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// parseStop accepts null, a string or a list of strings; empty strings are dropped.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	var list []string
	switch {
	case json.Unmarshal(raw, &one) == nil:
		list = []string{one}
	case json.Unmarshal(raw, &list) == nil:
	default:
		return nil, invalid("stop", "'stop' must be a string or a list of strings")
	}
	if len(list) > maxStops {
		return nil, invalid("stop", "'stop' holds %d sequences, over the limit of %d", len(list), maxStops)
	}
	var stops []string
	for _, s := range list {
		if s != "" {
			stops = append(stops, s)
		}
	}
	return stops, nil
}

// Responses.

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"` // "chat.completion"
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	Logprobs     *struct{}       `json:"logprobs"` // always null
	FinishReason string          `json:"finish_reason"`
}

type chatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"` // "chat.completion.chunk"
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *usage        `json:"usage,omitempty"`
}

type responseMessage struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"` // null when the answer is only a tool call
	ToolCalls []toolCallJSON `json:"tool_calls,omitempty"`
}

type chunkChoice struct {
	Index        int        `json:"index"`
	Delta        chunkDelta `json:"delta"`
	Logprobs     *struct{}  `json:"logprobs"`      // always null
	FinishReason *string    `json:"finish_reason"` // null until the last chunk
}

type chunkDelta struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []toolCallJSON `json:"tool_calls,omitempty"`
}

type modelList struct {
	Object string      `json:"object"` // "list"
	Data   []modelCard `json:"data"`
}

type modelCard struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}
