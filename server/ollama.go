package server

// Ollama's API on the same engine and queue as the OpenAI one: /api/chat and /api/generate (NDJSON
// streaming by default), /api/tags, /api/show and /api/version, in the shapes the official clients read.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ollamaVersion is the Ollama API version these endpoints follow.
const ollamaVersion = "0.6.5"

type ollamaMessage struct {
	Role      string           `json:"role"`
	Content   string           `json:"content"`
	Images    []string         `json:"images,omitempty"`
	ToolCalls []ollamaToolCall `json:"tool_calls,omitempty"`
}

type ollamaToolCall struct {
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"` // an object
	} `json:"function"`
}

type ollamaOptions struct {
	Temperature   *float64        `json:"temperature"`
	TopK          *int            `json:"top_k"`
	TopP          *float64        `json:"top_p"`
	RepeatPenalty *float64        `json:"repeat_penalty"`
	Seed          *int64          `json:"seed"`
	NumPredict    *int            `json:"num_predict"`
	NumCtx        *int            `json:"num_ctx"`
	Stop          json.RawMessage `json:"stop"`
}

type ollamaRequest struct {
	Model    string          `json:"model"`
	Messages []ollamaMessage `json:"messages"` // /api/chat
	Prompt   *string         `json:"prompt"`   // /api/generate
	System   string          `json:"system"`   // /api/generate
	Stream   *bool           `json:"stream"`
	Format   json.RawMessage `json:"format"`
	Options  ollamaOptions   `json:"options"`
	Tools    []toolSpec      `json:"tools"`
}

func writeOllamaError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(map[string]string{"error": e.Message})
}

func (a *API) ollamaModelOK(name string) *apiError {
	if name == "" || name == a.cfg.ModelID || name == a.cfg.ModelID+":latest" {
		return nil
	}
	return newError(http.StatusNotFound, "", "", "model", "model '%s' not found; this server has '%s'", name, a.cfg.ModelID)
}

// generation turns an Ollama request into the same validated generation the OpenAI API runs.
func (a *API) ollamaGeneration(req *ollamaRequest, chat bool) (*generation, *apiError) {
	if aerr := a.ollamaModelOK(req.Model); aerr != nil {
		return nil, aerr
	}
	o := req.Options
	cr := chatRequest{Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP, RepetitionPenalty: o.RepeatPenalty, Seed: o.Seed, Stop: o.Stop}
	if chat {
		if len(req.Messages) == 0 {
			return nil, invalid("messages", "'messages' must hold at least one message")
		}
		for i, m := range req.Messages {
			if len(m.Images) > 0 {
				return nil, invalid(fmt.Sprintf("messages[%d].images", i), "'messages[%d].images': this model reads text only", i)
			}
			content, _ := json.Marshal(m.Content)
			cm := chatMessage{Role: m.Role, Content: content}
			for _, tc := range m.ToolCalls {
				var c toolCallJSON
				c.Type, c.Function.Name, c.Function.Arguments = "function", tc.Function.Name, string(tc.Function.Arguments)
				cm.ToolCalls = append(cm.ToolCalls, c)
			}
			cr.Messages = append(cr.Messages, cm)
		}
	} else {
		if req.Prompt == nil {
			return nil, invalid("prompt", "missing required parameter: 'prompt'")
		}
		if req.System != "" {
			sys, _ := json.Marshal(req.System)
			cr.Messages = append(cr.Messages, chatMessage{Role: "system", Content: sys})
		}
		p, _ := json.Marshal(*req.Prompt)
		cr.Messages = append(cr.Messages, chatMessage{Role: "user", Content: p})
	}
	g, aerr := cr.validate(a.cfg.ModelID, a.model.Stop)
	if aerr != nil {
		return nil, aerr
	}
	if n := o.NumPredict; n != nil {
		g.opts.MaxTokens = max(*n, 0) // -1 (no limit) and -2 (fill the context): until the context is full
	}
	if n := o.NumCtx; n != nil && *n < 1 {
		return nil, invalid("options.num_ctx", "'options.num_ctx' is %d; it must be at least 1 (the server's context is %d tokens)", *n, a.maxCtx)
	}
	g.stream = req.Stream == nil || *req.Stream
	if aerr := a.checkToolTurns(g.messages); aerr != nil {
		return nil, aerr
	}
	switch f := strings.TrimSpace(string(req.Format)); {
	case f == "" || f == "null" || f == `""`:
	case f == `"json"`:
		if aerr := a.formatGrammar(g, "format", nil); aerr != nil {
			return nil, aerr
		}
	case strings.HasPrefix(f, "{"):
		if aerr := a.formatGrammar(g, "format", req.Format); aerr != nil {
			return nil, aerr
		}
	default:
		return nil, invalid("format", "'format' must be \"json\" or a JSON Schema object")
	}
	if aerr := a.useTools(g, req.Tools, nil); aerr != nil {
		return nil, aerr
	}
	return g, nil
}

func (a *API) handleOllama(chat bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowMethod(w, r, http.MethodPost) {
			return
		}
		body, aerr := readBody(w, r, a.cfg.MaxBody)
		var req ollamaRequest
		if aerr == nil {
			if err := json.Unmarshal(body, &req); err != nil {
				aerr = invalid("", "the request body is not valid JSON: %v", err)
			}
		}
		var g *generation
		if aerr == nil {
			g, aerr = a.ollamaGeneration(&req, chat)
		}
		if aerr != nil {
			writeOllamaError(w, aerr)
			return
		}
		if !chat && *req.Prompt == "" { // Ollama loads the model and answers done
			writeOllama(w, map[string]any{"model": a.cfg.ModelID, "created_at": time.Now().UTC(), "response": "", "done": true, "done_reason": "load"})
			return
		}
		prompt := a.prompt(g)
		if len(prompt) >= a.maxCtx {
			writeOllamaError(w, invalid("messages", "the prompt takes %d tokens, over this model's context of %d tokens", len(prompt), a.maxCtx))
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(a.stopped, cancel)()
		start := time.Now()
		j := newJob(ctx, prompt, g, a.maxCtx)
		if aerr := a.enqueue(j); aerr != nil {
			writeOllamaError(w, aerr)
			return
		}
		rc := http.NewResponseController(w)
		piece := func(text string, done bool) map[string]any {
			out := map[string]any{"model": a.cfg.ModelID, "created_at": time.Now().UTC(), "done": done}
			if chat {
				out["message"] = ollamaMessage{Role: "assistant", Content: text}
			} else {
				out["response"] = text
			}
			return out
		}
		if g.stream {
			w.Header().Set("Content-Type", "application/x-ndjson")
		}
		var all strings.Builder
	wait:
		for {
			select {
			case s, ok := <-j.text:
				if !ok {
					break wait
				}
				if !g.stream {
					all.WriteString(s)
				} else if writeOllama(w, piece(s, false)) != nil || rc.Flush() != nil {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
		if j.err != nil {
			c := completion{a: a, r: r, j: j}
			if e := c.failure(); e != nil {
				if g.stream {
					writeOllama(w, map[string]string{"error": e.Message})
				} else {
					writeOllamaError(w, e)
				}
			}
			return
		}
		all.WriteString(j.unparsedCall())
		last := piece(all.String(), true)
		reason := j.res.FinishReason
		if calls := j.toolCalls(); calls != nil && chat {
			var tc ollamaToolCall
			tc.Function.Name, tc.Function.Arguments = calls[0].Function.Name, json.RawMessage(calls[0].Function.Arguments)
			last["message"] = ollamaMessage{Role: "assistant", Content: all.String(), ToolCalls: []ollamaToolCall{tc}}
			reason = "stop" // Ollama reports a call with done_reason "stop"
		}
		elapsed := time.Since(start).Nanoseconds()
		last["done_reason"] = reason
		last["total_duration"], last["load_duration"] = elapsed, 0
		last["prompt_eval_count"], last["eval_count"] = j.res.Prefilled, len(j.res.Tokens)
		last["prompt_eval_duration"], last["eval_duration"] = 0, elapsed
		if !g.stream {
			w.Header().Set("Content-Type", "application/json")
		}
		writeOllama(w, last)
		rc.Flush()
	}
}

// writeOllama writes one JSON value and a newline (one NDJSON line, or a whole response).
func writeOllama(w http.ResponseWriter, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (a *API) ollamaDetails() map[string]any {
	return map[string]any{"format": "ilmweb", "family": "internlm3", "families": []string{"internlm3"},
		"parameter_size": "", "quantization_level": ""}
}

func (a *API) handleOllamaTags(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeOllama(w, map[string]any{"models": []map[string]any{{
		"name": a.cfg.ModelID, "model": a.cfg.ModelID, "modified_at": time.Unix(a.created, 0).UTC(),
		"size": 0, "digest": "", "details": a.ollamaDetails()}}})
}

func (a *API) handleOllamaShow(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	body, aerr := readBody(w, r, a.cfg.MaxBody)
	var req struct {
		Model string `json:"model"`
		Name  string `json:"name"` // older clients
	}
	if aerr == nil && json.Unmarshal(body, &req) != nil {
		aerr = invalid("", "the request body is not valid JSON")
	}
	if aerr == nil {
		aerr = a.ollamaModelOK(req.Model + req.Name)
	}
	if aerr != nil {
		writeOllamaError(w, aerr)
		return
	}
	caps := []string{"completion"}
	if a.model.Chat.Tools() != nil {
		caps = append(caps, "tools")
	}
	w.Header().Set("Content-Type", "application/json")
	writeOllama(w, map[string]any{
		"modelfile": "", "parameters": "temperature 1\ntop_k 40\ntop_p 0.8\nrepeat_penalty 1.005",
		"template": a.model.Tokenizer.ChatTemplate(), "details": a.ollamaDetails(), "capabilities": caps,
		"model_info": map[string]any{"general.architecture": "internlm3", "internlm3.context_length": a.maxCtx,
			"internlm3.block_count": a.model.Config.NumHiddenLayers, "internlm3.embedding_length": a.model.Config.HiddenSize},
		"modified_at": time.Unix(a.created, 0).UTC()})
}

func (a *API) handleOllamaVersion(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeOllama(w, map[string]string{"version": ollamaVersion})
}
