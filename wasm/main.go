//go:build js && wasm

// Command wasm is the engine inside the browser: built with GOOS=js GOARCH=wasm and started in a Web
// Worker (web/worker.js), it publishes globalThis.ilmwebEngine with check, load, chat, abort and tokenize.
// The worker downloads and verifies the shards; this side checks that the model fits before they are
// fetched, tokenizes, runs the decoder, samples, and keeps the system prompt's KV cache in the browser's
// storage (through the worker) so that a reloaded page does not prefill it again.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
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
	api.Set("check", js.FuncOf(e.check))
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

	prefillChunk int      // prompt tokens per Forward call: the grain of prefill progress and of stopping it
	prefixes     prefixes // the stored KV caches of system prompts
}

// prefixes reaches the KV caches of system prompts kept in the browser's storage, through the worker's
// loadPrefix(key) → Promise<Uint8Array|null> and storePrefix(key, bytes) → Promise. identity names what the
// cache's bytes depend on: the model (its manifest, which lists every shard's hash), this engine's build,
// the backend, its kernels and the KV cache's dtype; a blob made by anything else is refused.
type prefixes struct {
	load, store js.Value
	identity    string
}

// engineError is an error whose kind the page acts on ("no-webgpu", "limits", "too-large",
// "out-of-memory", "device-lost", "internal"); it crosses to JS as an Error with a .type property.
type engineError struct {
	kind string
	err  error
}

func (e *engineError) Error() string { return e.err.Error() }
func (e *engineError) Unwrap() error { return e.err }

// check({manifest, backend, contextLength}) → Promise<{bytes}>: whether the model can run here, from its
// manifest alone, before any shard is downloaded. The CPU path must hold the whole model in wasm32's
// 4 GiB ("too-large" otherwise); WebGPU must fit every buffer in the adapter's limits ("limits"; the
// browser does not say how much GPU memory there is). bytes is the memory the engine will need.
func (e *engine) check(this js.Value, args []js.Value) any {
	opts := args[0]
	return promise(func() (any, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		man, err := parseManifest(opts.Get("manifest"))
		if err != nil {
			return nil, err
		}
		ctxLen := min(contextLength(opts), man.ModelConfig.ContextLimit())
		switch backend := stringOpt(opts, "backend"); backend {
		case "cpu":
			if err := model.CheckWasm32(man, ctxLen); err != nil {
				return nil, &engineError{"too-large", err}
			}
			return map[string]any{"bytes": model.PlanCPU(man, ctxLen).Total()}, nil
		case "", "webgpu":
			if err := openGPU(); err != nil {
				return nil, err
			}
			m, err := webgpu.Plan(gpu.Limits, man.ModelConfig, webgpu.ManifestLayout(man), webgpu.Options{MaxContext: ctxLen})
			if err != nil {
				return nil, err
			}
			return map[string]any{"bytes": m.Total()}, nil
		default:
			return nil, fmt.Errorf("unknown backend %q", backend)
		}
	})
}

// load({manifest, files, fetchShard, onProgress, contextLength, backend, prefillChunk, engineVersion,
// loadPrefix, storePrefix, kernels, tuneBudgetMs}) → Promise<{adapter, backend, maxContext, vocabSize}>
func (e *engine) load(this js.Value, args []js.Value) any {
	opts := args[0]
	return promise(func() (any, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		man, err := parseManifest(opts.Get("manifest"))
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
		e.unload() // a model loaded before gives its GPU memory back first
		gpuOpts, err := gpuOptions(opts)
		if err != nil {
			return nil, err
		}
		m, dec, name, adapter, err := open(man, files, fetch, progress, stringOpt(opts, "backend"), contextLength(opts), gpuOpts)
		if err != nil {
			return nil, err
		}
		e.m, e.dec, e.backend = m, dec, name
		e.session = model.NewSession(dec, m.Config)
		e.replies = model.Replies{}
		e.vocab, e.formats = nil, map[string]*model.Grammar{}
		e.prefillChunk = 0
		if v := opts.Get("prefillChunk"); v.Type() == js.TypeNumber && v.Int() > 0 {
			e.prefillChunk = v.Int()
		}
		e.prefixes = prefixes{load: opts.Get("loadPrefix"), store: opts.Get("storePrefix"),
			identity: identity(jsonOf(opts.Get("manifest")), stringOpt(opts, "engineVersion"), name, adapter, dec)}
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

// gpu is the WebGPU device, opened on the first WebGPU check or load and kept for later ones unless it
// was lost.
var gpu *webgpu.Device

func openGPU() error {
	if gpu == nil || gpu.Lost() != nil {
		d, err := webgpu.NewDevice()
		if err != nil {
			return err
		}
		gpu = d
	}
	return nil
}

func parseManifest(v js.Value) (*model.Manifest, error) {
	return model.ParseManifest(model.ManifestFile, []byte(jsonOf(v)))
}

// jsonOf is v (a plain object: the manifest, the kernels) as JSON.
func jsonOf(v js.Value) string { return js.Global().Get("JSON").Call("stringify", v).String() }

// contextLength is the option's, 4096 by default.
func contextLength(opts js.Value) int {
	if v := opts.Get("contextLength"); v.Type() == js.TypeNumber && v.Int() > 0 {
		return v.Int()
	}
	return 4096
}

// gpuOptions are the WebGPU engine's options beyond the context: kernels {matvec, attention, matmul}
// forces variants (webgpu.Kernels; those missing are autotuned), tuneBudgetMs makes the autotune
// measure now within that many milliseconds.
func gpuOptions(opts js.Value) (webgpu.Options, error) {
	var o webgpu.Options
	if k := opts.Get("kernels"); k.Type() == js.TypeObject {
		dec := json.NewDecoder(strings.NewReader(jsonOf(k))) // a JS object: no duplicate keys
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o.Kernels); err != nil {
			return o, &engineError{"invalid-request", fmt.Errorf("kernels: %w", err)}
		}
	}
	if v := opts.Get("tuneBudgetMs"); v.Type() == js.TypeNumber && v.Float() > 0 {
		o.TuneBudget = time.Duration(v.Float() * float64(time.Millisecond))
	}
	return o, nil
}

func stringOpt(opts js.Value, name string) string {
	if v := opts.Get(name); v.Type() == js.TypeString {
		return v.String()
	}
	return ""
}

// open loads the model for the requested backend: "webgpu" (the default) streams the shards onto the GPU
// one at a time, so the weights are never whole in wasm memory; "cpu" (for debugging) holds them all.
// It returns the decoder with the backend's name and the adapter's.
func open(man *model.Manifest, files map[string][]byte, fetch func(int) ([]byte, error),
	progress func(done, total int64), backend string, ctxLen int, o webgpu.Options) (*model.Model, model.Decoder, string, string, error) {
	switch backend {
	case "cpu":
		if err := model.CheckWasm32(man, min(ctxLen, man.ModelConfig.ContextLimit())); err != nil {
			return nil, nil, "", "", &engineError{"too-large", err}
		}
		m, err := model.LoadConverted(man, files, fetch, progress)
		if err != nil {
			return nil, nil, "", "", err
		}
		ctxLen = min(ctxLen, m.Config.ContextLimit())
		return m, model.NewCPU(m.Config, m.Weights, ctxLen), "cpu", "cpu (wasm)", nil
	case "", "webgpu":
		if err := openGPU(); err != nil {
			return nil, nil, "", "", err
		}
		ctxLen = min(ctxLen, man.ModelConfig.ContextLimit())
		o.MaxContext = ctxLen
		m, dec, err := webgpu.LoadConverted(gpu, man, files, fetch, progress, o)
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

// chat(request, onToken, onPrefill) → Promise<{finish_reason, prompt_tokens, completion_tokens,
// prefilled_tokens, restored_tokens, seconds, tool_calls?}>. onPrefill(done, total, seconds) follows the
// prompt's prefill chunk by chunk; restored_tokens came from a stored KV cache instead.
func (e *engine) chat(this js.Value, args []js.Value) any {
	reqJS, onToken, onPrefill := args[0], args[1], args[2]
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
		kept, ids, err := e.m.Chat.Fit(msgs, ctxLen, min(maxTokens, ctxLen/2))
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		e.cancel = cancel
		defer cancel()
		restored, storePrefix := e.restorePrefix(kept, ids)
		defer storePrefix()
		opts.PrefillChunk = e.prefillChunk
		prefillStart := time.Now()
		opts.Prefill = func(done, total int) {
			if onPrefill.Type() == js.TypeFunction {
				onPrefill.Invoke(done, total, time.Since(prefillStart).Seconds())
			}
			// Between chunks, let the event loop run: a CPU prefill would otherwise hold it until the end,
			// and abort (the stop button) could not be heard.
			time.Sleep(time.Millisecond)
		}
		dec := e.m.Tokenizer.NewStreamDecoder()
		actionStart := -1
		if toolsMsg != nil {
			actionStart = e.m.Chat.Tools().ActionStart
		}
		var call *strings.Builder // the text from <|action_start|> on: a tool call
		start := time.Now()
		var first, last time.Time // when the first and the last token were chosen
		res, err := e.session.Generate(ctx, ids, opts,
			func(id int) error {
				if last = time.Now(); first.IsZero() {
					first = last
				}
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
			"prefilled_tokens": res.Prefilled, "restored_tokens": restored, "seconds": time.Since(start).Seconds(),
		}
		if !first.IsZero() {
			out["first_token_seconds"] = first.Sub(start).Seconds() // the prefill, and the first token's sampling
		}
		if n := len(res.Tokens); n > 1 && last.After(first) {
			out["decode_tokens_per_second"] = float64(n-1) / last.Sub(first).Seconds()
		}
		if g, ok := e.dec.(*webgpu.Engine); ok { // the CPU time of recording the GPU's work, and its kernels
			out["encode_us_per_dispatch"] = float64(g.Stats().Decode.EncodingPerDispatch().Nanoseconds()) / 1000
			out["dispatches_per_token"] = g.Stats().Decode.DispatchesPerToken()
			out["weight_bytes_per_token"] = g.Stats().Decode.WeightBytesPerToken() // what a decoded token's dispatches read
			out["kernels"] = g.Tuning().String()
			tune := map[string]any{}
			for label, took := range g.Tuning().Times {
				tune[label] = map[string]any{"us": float64(took.Nanoseconds()) / 1000, "bytes": g.Tuning().Bytes[label]}
			}
			out["tune"] = tune // the autotune's candidates: best time of a run, and the weight bytes it reads
			skipped := []any{}
			for _, label := range g.Tuning().Skipped {
				skipped = append(skipped, label)
			}
			out["tune_skipped"] = skipped // those left unmeasured once its budget was spent
			out["tune_ms"] = float64(g.Tuning().Took.Microseconds()) / 1000
			out["tune_clock"] = g.Tuning().Clock // "gpu timestamps" or "wall time of a submit"
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

// restorePrefix loads the stored KV cache of the prompt's system turn into the session when the session
// does not hold it already, and returns how many tokens it restored. Otherwise the returned function,
// called once the answer is done, stores that KV cache for the next time (the session then holds it). A
// stored cache is used only when its blob verifies (hash, size, this engine's identity) and covers
// exactly the system turn's token ids; anything else is recomputed, and the bad blob replaced.
func (e *engine) restorePrefix(kept []model.Message, ids []int) (int, func()) {
	nothing := func() {}
	p := e.prefixes
	if p.load.Type() != js.TypeFunction || p.store.Type() != js.TypeFunction || len(kept) == 0 || kept[0].Role != "system" {
		return 0, nothing
	}
	sys := e.m.Chat.Encode(kept[:1], false)
	// Beyond max_position_embeddings the prompt's RoPE scale depends on its length (dynamic NTK), so a
	// cache computed alone would differ from a fresh prefill's.
	if len(sys) >= len(ids) || !slices.Equal(ids[:len(sys)], sys) || len(ids) > e.m.Config.MaxPositionEmbeddings {
		return 0, nothing
	}
	if cached := e.session.Cached(); len(cached) >= len(sys) && slices.Equal(cached[:len(sys)], sys) {
		return 0, nothing // the session holds it: this conversation, or one before it, began the same way
	}
	key := prefixKey(p.identity, sys)
	if v, err := await(p.load.Invoke(key)); err == nil && !v.IsNull() && !v.IsUndefined() {
		snap, err := model.DecodeKV(bytesFromJS(v), p.identity)
		if err == nil && !slices.Equal(snap.Tokens, sys) {
			err = errors.New("it covers other tokens than the system prompt's")
		}
		if err == nil {
			err = e.session.Restore(snap)
		}
		if err == nil {
			return len(sys), nothing
		}
		js.Global().Get("console").Call("warn", fmt.Sprintf("ilmweb: the stored KV cache of the system prompt is not usable (%v); computing it again", err))
	}
	return 0, func() {
		snap, err := e.session.Snapshot(len(sys))
		if err != nil || !slices.Equal(snap.Tokens, sys) {
			return // the answer was stopped before the system turn was prefilled, or failed
		}
		blob := model.EncodeKV(snap, p.identity)
		arr := js.Global().Get("Uint8Array").New(len(blob))
		js.CopyBytesToJS(arr, blob)
		if _, err := await(p.store.Invoke(key, arr)); err != nil {
			js.Global().Get("console").Call("warn", fmt.Sprintf("ilmweb: could not store the system prompt's KV cache: %v", err))
		}
	}
}

// prefixKey names a stored KV cache: the engine's identity and the exact token ids it covers.
func prefixKey(identity string, ids []int) string {
	h := sha256.New()
	h.Write([]byte(identity))
	for _, id := range ids {
		fmt.Fprintf(h, ",%d", id)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// identity is what a KV cache computed here depends on (see prefixes). build names the engine: the
// worker passes the sha256 of engine.wasm; without it, the build's VCS stamp stands in.
func identity(manifest, build, backend, adapter string, dec model.Decoder) string {
	if build == "" {
		build = "unknown build"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
					build += " " + s.Key + "=" + s.Value
				}
			}
		}
	}
	kernels, kv := "cpu", "f32"
	if g, ok := dec.(*webgpu.Engine); ok {
		kernels, kv = fmt.Sprint(g.Tuning().Kernels), g.KVDType()
	}
	h := sha256.Sum256([]byte(manifest))
	return fmt.Sprintf("model %x; engine %s; %s on %s; kernels %s; kv %s", h[:16], build, backend, adapter, kernels, kv)
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
	var ve *webgpu.VariantError
	switch {
	case errors.As(err, &te):
		return te.kind
	case errors.As(err, &ve): // a kernel variant the load's options forced
		return "invalid-request"
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
