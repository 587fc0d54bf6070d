package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ilmweb/ilmweb/model"
)

// NewDecoder builds the engine the API runs on for a loaded model, with a KV cache of ctxLen positions.
// cmd/serve passes the one its -backend flag names.
type NewDecoder func(m *model.Model, ctxLen int) (model.Decoder, error)

// CPUDecoder is the CPU reference engine.
func CPUDecoder(m *model.Model, ctxLen int) (model.Decoder, error) {
	return model.NewCPU(m.Config, m.Weights, ctxLen), nil
}

// APIConfig configures the OpenAI-compatible API. Zero values take the defaults noted.
type APIConfig struct {
	Model      *model.Model
	ModelID    string     // the name in /v1/models and in requests' "model" (default "internlm3-8b-instruct")
	NewDecoder NewDecoder // default CPUDecoder
	ContextLen int        // KV cache positions (default 4096)
	QueueSize  int        // requests that may wait while one generates; more get 429 (default 8; -1: none wait)
	MaxBody    int64      // request body limit in bytes (default 1 MiB)
}

// API serves OpenAI's chat completions protocol on one engine. One worker goroutine owns the decoder and
// a model.Session and runs one generation at a time; requests wait in a bounded queue.
type API struct {
	cfg     APIConfig
	model   *model.Model
	maxCtx  int
	session *model.Session // owned by the worker goroutine
	created int64
	mux     *http.ServeMux

	repliesMu sync.Mutex
	replies   model.Replies // recent answers' ids, so follow-ups reuse the KV cache
	grammars  grammars      // compiled response formats and tool calls

	mu       sync.Mutex // guards closing the queue against sends to it, and admitted
	closed   bool
	admitted int                // jobs sent to the queue and not yet finished: the running one and those waiting
	queue    chan *job          // room for every admitted job, so a send never waits on the worker being scheduled
	idle     chan struct{}      // closed when the worker has exited
	stopped  context.Context    // ends when shutdown gives up waiting: running generations are cancelled
	stop     context.CancelFunc // ends stopped
}

// NewAPI builds the engine for cfg.Model and starts its worker. Call Shutdown to stop it.
func NewAPI(cfg APIConfig) (*API, error) {
	if cfg.Model == nil {
		return nil, errors.New("api: no model")
	}
	if cfg.ModelID == "" {
		cfg.ModelID = "internlm3-8b-instruct"
	}
	if cfg.NewDecoder == nil {
		cfg.NewDecoder = CPUDecoder
	}
	if cfg.ContextLen <= 0 {
		cfg.ContextLen = 4096
	}
	switch {
	case cfg.QueueSize == 0:
		cfg.QueueSize = 8
	case cfg.QueueSize < 0:
		cfg.QueueSize = 0
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	dec, err := cfg.NewDecoder(cfg.Model, cfg.ContextLen)
	if err != nil {
		return nil, fmt.Errorf("api: engine: %w", err)
	}
	a := &API{
		cfg:     cfg,
		model:   cfg.Model,
		maxCtx:  dec.MaxContext(),
		session: model.NewSession(dec, cfg.Model.Config),
		created: time.Now().Unix(),
		queue:   make(chan *job, cfg.QueueSize+1),
		idle:    make(chan struct{}),
	}
	a.stopped, a.stop = context.WithCancel(context.Background())
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("/v1/models", a.handleModels)
	a.mux.HandleFunc("/v1/models/{id}", a.handleModels)
	a.mux.HandleFunc("/v1/chat/completions", a.handleChat)
	a.mux.HandleFunc("/api/chat", a.handleOllama(true))
	a.mux.HandleFunc("/api/generate", a.handleOllama(false))
	a.mux.HandleFunc("/api/tags", a.handleOllamaTags)
	a.mux.HandleFunc("/api/show", a.handleOllamaShow)
	a.mux.HandleFunc("/api/version", a.handleOllamaVersion)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newError(http.StatusNotFound, "invalid_request_error", "unknown_url", "",
			"unknown request URL: %s %s", r.Method, r.URL.Path))
	})
	go a.work()
	return a, nil
}

// ContextLen is the number of positions the engine's KV cache holds: prompt and answer together.
func (a *API) ContextLen() int { return a.maxCtx }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff") // JSON and event streams are never to be sniffed as HTML
	a.mux.ServeHTTP(w, r)
}

// Shutdown stops taking requests; queued and running generations may finish until ctx ends, then they
// are cancelled. It returns when the worker has stopped.
func (a *API) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	select {
	case <-a.idle:
		return nil
	case <-ctx.Done():
		a.stop()
		<-a.idle
		return ctx.Err()
	}
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, newError(http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "",
		"%s %s is not allowed; use %s", r.Method, r.URL.Path, method))
	return false
}

func (a *API) handleModels(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	card := modelCard{ID: a.cfg.ModelID, Object: "model", Created: a.created, OwnedBy: "ilmweb"}
	w.Header().Set("Content-Type", "application/json")
	if id := r.PathValue("id"); id != "" {
		if id != a.cfg.ModelID {
			writeError(w, newError(http.StatusNotFound, "invalid_request_error", "model_not_found", "model",
				"the model '%s' does not exist; this server has '%s'", id, a.cfg.ModelID))
			return
		}
		json.NewEncoder(w).Encode(card)
		return
	}
	json.NewEncoder(w).Encode(modelList{Object: "list", Data: []modelCard{card}})
}

func (a *API) handleChat(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	req, aerr := decodeRequest(w, r, a.cfg.MaxBody)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	g, aerr := req.validate(a.cfg.ModelID, a.model.Stop)
	if aerr == nil {
		aerr = a.constrain(req, g)
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	prompt := a.prompt(g)
	if len(prompt) >= a.maxCtx {
		writeError(w, newError(http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", "messages",
			"this model's maximum context length is %d tokens, but the messages take %d tokens (and the answer needs at least one more)",
			a.maxCtx, len(prompt)))
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(a.stopped, cancel)()
	j := newJob(ctx, prompt, g, a.maxCtx)
	if aerr := a.enqueue(j); aerr != nil {
		writeError(w, aerr)
		return
	}
	c := completion{a: a, w: w, r: r, j: j, id: "chatcmpl-" + randomID(), created: time.Now().Unix()}
	if g.stream {
		c.stream(g.includeUsage)
	} else {
		c.whole()
	}
}

// prompt renders messages in the chat template, with the official system prompt in front unless the
// request brings its own. Content is tokenized as text: "<|im_end|>" typed by a user stays characters.
// Answers this server gave are rendered with the ids it generated, so the cached prefix still matches.
// Tools are listed in a system turn of their own after the system prompt, as LMDeploy's template does.
func (a *API) prompt(g *generation) []int {
	a.repliesMu.Lock()
	messages := a.replies.Attach(g.messages)
	a.repliesMu.Unlock()
	messages = model.WithSystemPrompt(messages, false)
	if g.tools != nil {
		messages = slices.Insert(slices.Clone(messages), 1, g.tools.system)
	}
	return a.model.Chat.Encode(messages, true)
}

func (a *API) enqueue(j *job) *apiError {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return newError(http.StatusServiceUnavailable, "server_error", "shutting_down", "", "the server is shutting down")
	}
	if a.admitted > a.cfg.QueueSize { // one running and QueueSize waiting
		return newError(http.StatusTooManyRequests, "rate_limit_error", "queue_full", "",
			"the server is busy: one generation is running and the queue of %d waiting requests is full; retry later", a.cfg.QueueSize)
	}
	a.admitted++
	a.queue <- j // never blocks: the queue has room for every admitted job
	return nil
}

// finished frees the admission slot of a job the worker is done with.
func (a *API) finished() {
	a.mu.Lock()
	a.admitted--
	a.mu.Unlock()
}

// completion answers one admitted request from its job's output.
type completion struct {
	a       *API
	w       http.ResponseWriter
	r       *http.Request
	j       *job
	id      string
	created int64
}

func (c *completion) usage() usage {
	n := len(c.j.res.Tokens)
	return usage{PromptTokens: len(c.j.prompt), CompletionTokens: n, TotalTokens: len(c.j.prompt) + n}
}

// failure describes why a job ended without an answer; nil when the client itself went away.
func (c *completion) failure() *apiError {
	switch {
	case c.r.Context().Err() != nil:
		return nil
	case c.a.stopped.Err() != nil:
		return newError(http.StatusServiceUnavailable, "server_error", "shutting_down", "", "the server shut down during the generation")
	default:
		return newError(http.StatusInternalServerError, "server_error", "engine_error", "", "generation failed: %v", c.j.err)
	}
}

// whole waits for the answer and sends it as one chat.completion.
func (c *completion) whole() {
	var text bytes.Buffer
wait:
	for {
		select {
		case s, ok := <-c.j.text:
			if !ok {
				break wait
			}
			text.WriteString(s)
		case <-c.r.Context().Done():
			return
		}
	}
	if c.j.err != nil {
		if e := c.failure(); e != nil {
			writeError(c.w, e)
		}
		return
	}
	c.w.Header().Set("Content-Type", "application/json")
	text.WriteString(c.j.unparsedCall())
	content := text.String()
	msg := responseMessage{Role: "assistant", Content: &content, ToolCalls: c.j.toolCalls()}
	finish := c.j.res.FinishReason
	if msg.ToolCalls != nil {
		finish = "tool_calls"
		if content == "" {
			msg.Content = nil
		}
	}
	json.NewEncoder(c.w).Encode(chatCompletion{
		ID: c.id, Object: "chat.completion", Created: c.created, Model: c.a.cfg.ModelID,
		Choices: []chatChoice{{Message: msg, FinishReason: finish}},
		Usage:   c.usage(),
	})
}

// stream sends the answer as server-sent events: a chunk with the role, one per piece of text, one with
// the finish reason, optionally one with the usage, then [DONE].
func (c *completion) stream(includeUsage bool) {
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(c.w)
	send := func(v any) bool {
		var buf bytes.Buffer
		buf.WriteString("data: ")
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(v) // ends with "\n"
		buf.WriteString("\n")
		if _, err := c.w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	chunk := func(delta chunkDelta, finish *string) chatChunk {
		return chatChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.a.cfg.ModelID,
			Choices: []chunkChoice{{Delta: delta, FinishReason: finish}}}
	}
	empty := ""
	if !send(chunk(chunkDelta{Role: "assistant", Content: &empty}, nil)) {
		return // the deferred cancel stops the job
	}
wait:
	for {
		select {
		case s, ok := <-c.j.text:
			if !ok {
				break wait
			}
			if !send(chunk(chunkDelta{Content: &s}, nil)) {
				return
			}
		case <-c.r.Context().Done():
			return
		}
	}
	if c.j.err != nil {
		if e := c.failure(); e != nil {
			send(struct {
				Error *apiError `json:"error"`
			}{e})
		}
		return
	}
	finish := c.j.res.FinishReason
	if calls := c.j.toolCalls(); calls != nil {
		calls[0].Index = new(int)
		if !send(chunk(chunkDelta{ToolCalls: calls}, nil)) {
			return
		}
		finish = "tool_calls"
	} else if s := c.j.unparsedCall(); s != "" && !send(chunk(chunkDelta{Content: &s}, nil)) {
		return
	}
	if !send(chunk(chunkDelta{}, &finish)) {
		return
	}
	if includeUsage {
		u := c.usage()
		if !send(chatChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.a.cfg.ModelID,
			Choices: []chunkChoice{}, Usage: &u}) {
			return
		}
	}
	c.w.Write([]byte("data: [DONE]\n\n"))
	rc.Flush()
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randomSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
