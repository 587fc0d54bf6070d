//go:build js && wasm

// Command wasm is the engine inside the browser: built with GOOS=js GOARCH=wasm and started in a Web
// Worker (web/worker.js), it publishes globalThis.ilmwebEngine with load, chat, abort and tokenize.
// The worker downloads and verifies the shards; this side tokenizes, runs the decoder and samples.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall/js"
	"time"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/webgpu"
)

func main() {
	e := &engine{}
	api := js.Global().Get("Object").New()
	api.Set("load", js.FuncOf(e.load))
	api.Set("chat", js.FuncOf(e.chat))
	api.Set("abort", js.FuncOf(e.abort))
	api.Set("tokenize", js.FuncOf(e.tokenize))
	js.Global().Set("ilmwebEngine", api)
	if ready := js.Global().Get("ilmwebReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {} // keep the Go runtime alive for the callbacks
}

// engine is the one model loaded in this worker and the conversation running on it.
type engine struct {
	mu      sync.Mutex // one load or chat at a time
	m       *model.Model
	dec     model.Decoder
	session *model.Session
	backend string
	replies model.Replies      // answers given, to render them back with their ids (see model.Replies)
	cancel  context.CancelFunc // of the running chat
	vocab   *model.Vocab       // of the loaded model, built on the first constrained chat
	formats map[string]*model.Grammar
}

// engineError is an error whose kind the page acts on ("no-webgpu", "limits", "out-of-memory",
// "device-lost", "internal"); it crosses to JS as an Error with a .type property.
type engineError struct {
	kind string
	err  error
}

func (e *engineError) Error() string { return e.err.Error() }
func (e *engineError) Unwrap() error { return e.err }

// load({manifest, files, fetchShard, onProgress, contextLength, backend}) → Promise<{adapter, backend, maxContext, vocabSize}>
func (e *engine) load(this js.Value, args []js.Value) any {
	opts := args[0]
	return promise(func() (any, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		manifest := js.Global().Get("JSON").Call("stringify", opts.Get("manifest")).String()
		man, err := model.ParseManifest(model.ManifestFile, []byte(manifest))
		if err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		jsFiles := opts.Get("files")
		for _, f := range man.Files {
			v := jsFiles.Get(f.Name)
			if v.IsUndefined() {
				continue
			}
			files[f.Name] = bytesFromJS(v)
		}
		fetch := func(i int) ([]byte, error) {
			v, err := await(opts.Call("fetchShard", i))
			if err != nil {
				return nil, fmt.Errorf("shard %d: %w", i, err)
			}
			return bytesFromJS(v), nil
		}
		onProgress := opts.Get("onProgress")
		progress := func(done, total int64) {
			if onProgress.Type() == js.TypeFunction {
				onProgress.Invoke("upload", done, total)
			}
		}
		ctxLen := 4096
		if v := opts.Get("contextLength"); v.Type() == js.TypeNumber && v.Int() > 0 {
			ctxLen = v.Int()
		}
		backend := ""
		if v := opts.Get("backend"); v.Type() == js.TypeString {
			backend = v.String()
		}
		e.unload() // a model loaded before gives its GPU memory back first
		m, dec, name, adapter, err := open(man, files, fetch, progress, backend, ctxLen)
		if err != nil {
			return nil, err
		}
		e.m, e.dec, e.backend = m, dec, name
		e.session = model.NewSession(dec, m.Config)
		e.replies = model.Replies{}
		e.vocab, e.formats = nil, map[string]*model.Grammar{}
		return map[string]any{
			"adapter": adapter, "backend": name, "maxContext": dec.MaxContext(), "vocabSize": m.Config.VocabSize,
		}, nil
	})
}

// unload drops the loaded model, releasing the GPU memory of its engine.
func (e *engine) unload() {
	if c, ok := e.dec.(interface{ Close() }); ok {
		c.Close()
	}
	e.m, e.dec, e.session = nil, nil, nil
}

// gpu is the WebGPU device, opened on the first WebGPU load and kept for later ones unless it was lost.
var gpu *webgpu.Device

// open loads the model for the requested backend: "webgpu" (the default) streams the shards onto the GPU
// one at a time, so the weights are never whole in wasm memory; "cpu" (for debugging) holds them all.
// It returns the decoder with the backend's name and the adapter's.
func open(man *model.Manifest, files map[string][]byte, fetch func(int) ([]byte, error),
	progress func(done, total int64), backend string, ctxLen int) (*model.Model, model.Decoder, string, string, error) {
	switch backend {
	case "cpu":
		m, err := model.LoadConverted(man, files, fetch, progress)
		if err != nil {
			return nil, nil, "", "", err
		}
		ctxLen = min(ctxLen, m.Config.ContextLimit())
		return m, model.NewCPU(m.Config, m.Weights, ctxLen), "cpu", "cpu (wasm)", nil
	case "", "webgpu":
		if gpu == nil || gpu.Lost() != nil {
			d, err := webgpu.NewDevice()
			if err != nil {
				return nil, nil, "", "", err
			}
			gpu = d
		}
		ctxLen = min(ctxLen, man.ModelConfig.ContextLimit())
		m, dec, err := webgpu.LoadConverted(gpu, man, files, fetch, progress, webgpu.Options{MaxContext: ctxLen})
		if err != nil {
			return nil, nil, "", "", err
		}
		return m, dec, "webgpu", gpu.Adapter, nil
	default:
		return nil, nil, "", "", fmt.Errorf("unknown backend %q", backend)
	}
}

type chatRequest struct {
	Messages []chatMessage `json:"messages"`
	Tools    []struct {
		Function model.Function `json:"function"`
	} `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"` // "none", "auto", "required" or {function: {name}}
	Think             bool            `json:"think"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	TopK              *int            `json:"top_k"`
	RepetitionPenalty *float64        `json:"repetition_penalty"`
	MaxTokens         int             `json:"max_tokens"`
	Seed              *uint64         `json:"seed"`
	ResponseFormat    *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

// chatMessage is a message as engine.js passes it: OpenAI's roles, including "tool", and tool calls.
type chatMessage struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	ToolCalls []struct {
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// messages turns the request's messages into the model's turns: a tool's result is InternLM3's
// environment turn, an assistant's calls are rendered after its text.
func (e *engine) messages(req *chatRequest) ([]model.Message, error) {
	var out []model.Message
	for i, m := range req.Messages {
		msg := model.Message{Role: m.Role, Content: m.Content}
		if m.Role == "tool" {
			msg.Role, msg.Plugin = "environment", true
		}
		for _, c := range m.ToolCalls {
			var args json.RawMessage
			if json.Unmarshal([]byte(c.Function.Arguments), &args) != nil {
				return nil, &engineError{"invalid-request", fmt.Errorf("messages[%d].tool_calls: arguments are not JSON", i)}
			}
			msg.Calls = append(msg.Calls, model.CallText(c.Function.Name, args))
		}
		if (msg.Plugin || msg.Calls != nil) && e.m.Chat.Tools() == nil {
			return nil, &engineError{"invalid-request", fmt.Errorf("messages[%d]: this model cannot call tools (its tokenizer has no <|plugin|> and <|action_start|> tokens)", i)}
		}
		out = append(out, msg)
	}
	return out, nil
}

// tools sets up the request's tools: the system turn listing them, <|action_end|> as a stop, and for
// tool_choice "required" or a named function the grammar of a call. It returns the system turn (nil
// without tools) and the grammar (nil unless a call is forced).
func (e *engine) tools(req *chatRequest, opts *model.GenerateOptions) (*model.Message, error) {
	choice := "auto"
	var named string
	if len(req.ToolChoice) > 0 && string(req.ToolChoice) != "null" {
		var obj struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(req.ToolChoice, &choice) != nil {
			if json.Unmarshal(req.ToolChoice, &obj) != nil || obj.Function.Name == "" {
				return nil, &engineError{"invalid-request", errors.New("tool_choice must be 'none', 'auto', 'required' or {type: 'function', function: {name}}")}
			}
			choice, named = "named", obj.Function.Name
		}
	}
	if len(req.Tools) == 0 || choice == "none" {
		return nil, nil
	}
	tt := e.m.Chat.Tools()
	if tt == nil {
		return nil, &engineError{"invalid-request", errors.New("tools: this model cannot call tools (its tokenizer has no <|plugin|>, <|action_start|> and <|action_end|> tokens)")}
	}
	var functions []model.Function
	var calls []model.ToolCall
	for _, t := range req.Tools {
		functions = append(functions, t.Function)
		if named == "" || named == t.Function.Name {
			calls = append(calls, model.ToolCall{Name: t.Function.Name, Parameters: t.Function.Parameters})
		}
	}
	if len(calls) == 0 {
		return nil, &engineError{"invalid-request", fmt.Errorf("tool_choice names %q, which is not in tools", named)}
	}
	opts.Stop = append(append([]int(nil), opts.Stop...), tt.ActionEnd)
	if choice == "required" || choice == "named" {
		e.ensureVocab()
		g, err := model.ToolCallGrammar(e.vocab, calls, tt.ActionStart, tt.Plugin, tt.ActionEnd)
		if err != nil {
			return nil, &engineError{"invalid-request", fmt.Errorf("tools: %w", err)}
		}
		opts.Grammar = g
	}
	msg := model.ToolsMessage(functions)
	return &msg, nil
}

func (e *engine) ensureVocab() {
	if e.vocab == nil {
		e.vocab = model.NewVocab(e.m.Tokenizer, e.m.Stop)
	}
}

// grammar compiles the request's response_format (OpenAI's json_object or json_schema; nil for text),
// remembering a few: their token classes are built as answers reach them.
func (e *engine) grammar(req *chatRequest) (*model.Grammar, error) {
	f := req.ResponseFormat
	if f == nil || f.Type == "" || f.Type == "text" {
		return nil, nil
	}
	var schema json.RawMessage
	switch f.Type {
	case "json_object":
	case "json_schema":
		if f.JSONSchema == nil || len(f.JSONSchema.Schema) == 0 {
			return nil, &engineError{"invalid-request", errors.New("response_format.json_schema.schema is missing")}
		}
		schema = f.JSONSchema.Schema
	default:
		return nil, &engineError{"invalid-request", fmt.Errorf("response_format.type is %q; it must be text, json_object or json_schema", f.Type)}
	}
	key := f.Type + string(schema)
	if g, ok := e.formats[key]; ok {
		return g, nil
	}
	e.ensureVocab()
	g := model.JSONObjectGrammar(e.vocab)
	if schema != nil {
		var err error
		if g, err = model.SchemaGrammar(e.vocab, schema); err != nil {
			return nil, &engineError{"invalid-request", fmt.Errorf("response_format.json_schema.schema: %w", err)}
		}
	}
	if len(e.formats) >= 8 {
		clear(e.formats)
	}
	e.formats[key] = g
	return g, nil
}

// chat(request, onToken) → Promise<{finish_reason, prompt_tokens, completion_tokens, prefilled_tokens, seconds, tool_calls?}>
func (e *engine) chat(this js.Value, args []js.Value) any {
	reqJS, onToken := args[0], args[1]
	return promise(func() (any, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.m == nil {
			return nil, errors.New("chat before load")
		}
		var req chatRequest
		if err := decodeJS(reqJS, &req); err != nil {
			return nil, err
		}
		p := model.DefaultSampling()
		p.Seed = uint64(time.Now().UnixNano())
		setIf(&p.Temperature, req.Temperature)
		setIf(&p.TopP, req.TopP)
		setIf(&p.TopK, req.TopK)
		setIf(&p.RepetitionPenalty, req.RepetitionPenalty)
		setIf(&p.Seed, req.Seed)
		grammar, err := e.grammar(&req)
		if err != nil {
			return nil, err
		}
		opts := model.GenerateOptions{Stop: e.m.Stop, Sampling: p, Grammar: grammar}
		toolsMsg, err := e.tools(&req, &opts)
		if err != nil {
			return nil, err
		}
		messages, err := e.messages(&req)
		if err != nil {
			return nil, err
		}
		maxTokens := req.MaxTokens
		if maxTokens <= 0 {
			maxTokens = 1024
			if req.Think {
				maxTokens = 8192
			}
		}
		opts.MaxTokens = maxTokens
		ctxLen := e.dec.MaxContext()
		msgs := model.WithSystemPrompt(e.replies.Attach(messages), req.Think)
		if toolsMsg != nil {
			msgs = slices.Insert(slices.Clone(msgs), 1, *toolsMsg)
		}
		_, ids, err := e.m.Chat.Fit(msgs, ctxLen, min(maxTokens, ctxLen/2))
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		e.cancel = cancel
		defer cancel()
		dec := e.m.Tokenizer.NewStreamDecoder()
		actionStart := -1
		if toolsMsg != nil {
			actionStart = e.m.Chat.Tools().ActionStart
		}
		var call *strings.Builder // the text from <|action_start|> on: a tool call
		start := time.Now()
		res, err := e.session.Generate(ctx, ids, opts,
			func(id int) error {
				if id == actionStart && call == nil {
					call = &strings.Builder{}
					if s := dec.Flush(); s != "" {
						onToken.Invoke(s, -1)
					}
					return nil
				}
				if call != nil {
					call.WriteString(dec.Add(id))
				} else if s := dec.Add(id); s != "" {
					onToken.Invoke(s, id)
				}
				return nil
			})
		if s := dec.Flush(); s != "" {
			if call != nil {
				call.WriteString(s)
			} else {
				onToken.Invoke(s, -1)
			}
		}
		finish := res.FinishReason
		if errors.Is(err, context.Canceled) {
			finish, err = "abort", nil
		}
		if err != nil {
			return nil, err
		}
		out := map[string]any{
			"finish_reason": finish, "prompt_tokens": res.PromptTokens, "completion_tokens": len(res.Tokens),
			"prefilled_tokens": res.Prefilled, "seconds": time.Since(start).Seconds(),
		}
		if g, ok := e.dec.(*webgpu.Engine); ok { // the CPU time of recording the GPU's work, and its kernels
			out["encode_us_per_dispatch"] = float64(g.Stats().Decode.EncodingPerDispatch().Nanoseconds()) / 1000
			out["dispatches_per_token"] = g.Stats().Decode.DispatchesPerToken()
			out["kernels"] = g.Tuning().String()
		}
		if call != nil {
			name, args, ok := model.ParseCall(call.String())
			if !ok { // tool_choice auto: a call the model did not write well stays text
				onToken.Invoke(call.String(), -1)
				return out, nil
			}
			out["finish_reason"] = "tool_calls"
			out["tool_calls"] = []any{map[string]any{"id": fmt.Sprintf("call_%d", time.Now().UnixNano()), "type": "function",
				"function": map[string]any{"name": name, "arguments": string(args)}}}
			return out, nil
		}
		e.replies.Remember(e.m.Tokenizer.Decode(res.Tokens), res.Tokens)
		return out, nil
	})
}

// abort() stops the running chat; its promise resolves with finish_reason "abort".
func (e *engine) abort(this js.Value, args []js.Value) any {
	if c := e.cancel; c != nil {
		c()
	}
	return nil
}

// tokenize(text) → Array of ids (for tests and token counting).
func (e *engine) tokenize(this js.Value, args []js.Value) any {
	if e.m == nil {
		return js.Global().Get("Array").New()
	}
	ids := e.m.Tokenizer.Encode(args[0].String())
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return js.ValueOf(out)
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// decodeJS turns a plain JS object into a Go value through JSON.
func decodeJS(v js.Value, dst any) error {
	s := js.Global().Get("JSON").Call("stringify", v).String()
	if err := json.Unmarshal([]byte(s), dst); err != nil {
		return fmt.Errorf("bad request: %w", err)
	}
	return nil
}

// bytesFromJS copies a Uint8Array (or ArrayBuffer) into Go memory.
func bytesFromJS(v js.Value) []byte {
	if v.InstanceOf(js.Global().Get("ArrayBuffer")) {
		v = js.Global().Get("Uint8Array").New(v)
	}
	b := make([]byte, v.Get("byteLength").Int())
	js.CopyBytesToGo(b, v)
	return b
}

// promise runs fn on its own goroutine (JS callbacks must not block) and settles a JS Promise with it.
func promise(fn func() (any, error)) js.Value {
	var handler js.Func
	handler = js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer handler.Release()
			v, err := fn()
			if err != nil {
				reject.Invoke(jsError(err))
				return
			}
			resolve.Invoke(js.ValueOf(v))
		}()
		return nil
	})
	return js.Global().Get("Promise").New(handler)
}

// jsError builds a JS Error carrying the error kind in .type.
func jsError(err error) js.Value {
	e := js.Global().Get("Error").New(err.Error())
	e.Set("type", kindOf(err))
	return e
}

// kindOf is the kind of error the page acts on: an engineError's own, or the GPU's, else "internal".
func kindOf(err error) string {
	var te *engineError
	switch {
	case errors.As(err, &te):
		return te.kind
	case errors.Is(err, webgpu.ErrNoAdapter): // navigator.gpu missing, or no adapter
		return "no-webgpu"
	case errors.Is(err, webgpu.ErrDeviceLost):
		return "device-lost"
	case errors.Is(err, webgpu.ErrOutOfMemory):
		return "out-of-memory"
	case errors.Is(err, webgpu.ErrLimits): // a buffer or binding the device's limits do not allow
		return "limits"
	}
	return "internal"
}

// await blocks the calling goroutine until the JS promise settles.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var then, catch js.Func
	then = js.FuncOf(func(this js.Value, args []js.Value) any {
		ch <- result{v: args[0]}
		return nil
	})
	catch = js.FuncOf(func(this js.Value, args []js.Value) any {
		ch <- result{err: errors.New(js.Global().Get("String").Invoke(args[0]).String())}
		return nil
	})
	defer then.Release()
	defer catch.Release()
	p.Call("then", then, catch)
	r := <-ch
	return r.v, r.err
}
