package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ilmweb/ilmweb/model"
)

// job is one generation waiting for, or running on, the engine.
type job struct {
	ctx    context.Context // the request's context: a client that leaves cancels its generation
	prompt []int
	opts   model.GenerateOptions
	stops  []string
	// text receives the answer piece by piece. It is buffered for every token the answer may have
	// plus the final flush, so the worker never waits on a slow client; the worker closes it when done.
	text chan string
	res  model.Result // set before text is closed
	err  error
	// With tools, the answer's text from <|action_start|> on is a call: it goes to call, not to text.
	actionStart int // -1: no tools
	inCall      bool
	call        string // set before text is closed
}

func newJob(ctx context.Context, prompt []int, g *generation, maxCtx int) *job {
	room := maxCtx - len(prompt) // Generate stops when the context is full
	if g.opts.MaxTokens > 0 {
		room = min(room, g.opts.MaxTokens)
	}
	j := &job{ctx: ctx, prompt: prompt, opts: g.opts, stops: g.stops, text: make(chan string, room+1), actionStart: -1}
	if g.tools != nil {
		j.actionStart = g.tools.actionStart
	}
	return j
}

// errStopSequence ends generation when the answer reaches a stop sequence.
var errStopSequence = errors.New("stop sequence")

// work runs queued jobs one after another on the one decoder, until the queue is closed. The session
// keeps the last conversation's KV cache, so a follow-up request sharing its prefix prefills only the
// new tokens.
func (a *API) work() {
	defer close(a.idle)
	for j := range a.queue {
		a.run(j)
	}
}

func (a *API) run(j *job) {
	defer close(j.text)
	defer a.finished() // before the client is told it is done, so its next request finds the worker free
	defer func() {
		if p := recover(); p != nil { // a bug in the engine fails this request, not the server
			a.session.Reset()
			j.err = fmt.Errorf("engine failure: %v", p)
		}
	}()
	if j.err = j.ctx.Err(); j.err != nil { // gone while queued
		return
	}
	dec := a.model.Tokenizer.NewStreamDecoder()
	stop := stopMatcher{stops: j.stops}
	var call strings.Builder
	j.res, j.err = a.session.Generate(j.ctx, j.prompt, j.opts, func(id int) error {
		if id == j.actionStart && !j.inCall {
			j.inCall = true
			if text := stop.pending + dec.Flush(); text != "" {
				j.text <- text
			}
			stop.pending = ""
			return nil
		}
		if j.inCall {
			call.WriteString(dec.Add(id))
			return nil
		}
		text, hit := stop.add(dec.Add(id))
		if text != "" {
			j.text <- text
		}
		if hit {
			return errStopSequence
		}
		return nil
	})
	switch {
	case j.inCall:
		call.WriteString(dec.Flush())
		j.call = call.String()
	case errors.Is(j.err, errStopSequence):
		j.res.FinishReason, j.err = "stop", nil
	case j.err == nil:
		text, hit := stop.add(dec.Flush())
		if !hit {
			text += stop.pending
			// The client got the whole answer: remember its ids for when it comes back in a follow-up.
			a.repliesMu.Lock()
			a.replies.Remember(a.model.Tokenizer.Decode(j.res.Tokens), j.res.Tokens)
			a.repliesMu.Unlock()
		} else {
			j.res.FinishReason = "stop"
		}
		if text != "" {
			j.text <- text
		}
	}
}

// stopMatcher cuts decoded text at the first stop sequence. Text that could be the start of a stop
// sequence is held back until the next piece decides it.
type stopMatcher struct {
	stops   []string
	pending string
}

// add takes the next piece of text and returns what can be emitted, and whether a stop sequence was
// reached (the returned text then ends just before it).
func (m *stopMatcher) add(s string) (string, bool) {
	if len(m.stops) == 0 {
		return s, false
	}
	m.pending += s
	cut := -1
	for _, stop := range m.stops {
		if i := strings.Index(m.pending, stop); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out := m.pending[:cut]
		m.pending = ""
		return out, true
	}
	hold := 0 // the longest tail of pending that a stop sequence starts with
	for _, stop := range m.stops {
		for n := min(len(stop)-1, len(m.pending)); n > hold; n-- {
			if strings.HasSuffix(m.pending, stop[:n]) {
				hold = n
				break
			}
		}
	}
	out := m.pending[:len(m.pending)-hold]
	m.pending = m.pending[len(m.pending)-hold:]
	return out, false
}
