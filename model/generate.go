package model

import (
	"context"
	"fmt"
	"slices"
)

// Decoder runs the model over a KV cache: the CPU reference, or the WebGPU engine.
type Decoder interface {
	// Forward processes tokens at positions pos.. (overwriting the cache from pos on) and returns the
	// logits of every token when all is set, else of the last one only.
	Forward(tokens []int, pos int, all bool) ([][]float32, error)
	// MaxContext is the number of positions the KV cache holds.
	MaxContext() int
}

// TopKDecoder is a Decoder that can also finish the token on the device: after running tokens it applies
// HF's repetition penalty over the distinct ids of context to the last token's logits and returns only the
// k largest (ids and logits, by descending logit, ties lower id first), so a token costs a tiny readback.
type TopKDecoder interface {
	Decoder
	ForwardTopK(tokens []int, pos int, k int, penalty float32, context []int) (ids []int, logits []float32, err error)
}

// MaxTopK is the largest k a TopKDecoder must support.
const MaxTopK = 64

// prefillChunk bounds how many prompt tokens one Forward call takes, so that during long prompts
// cancellation is noticed, scratch memory stays bounded and progress can be told (a CPU prefill of the
// official system prompt at 8B takes minutes).
const prefillChunk = 128

// Session is one conversation on a decoder. It remembers which tokens sit in the KV cache so the next
// turn, sharing the conversation so far as a prefix, prefills only its new tokens.
type Session struct {
	dec    Decoder
	cfg    *Config
	cached []int // tokens whose keys and values are in the cache, in order
}

// NewSession starts a conversation on dec.
func NewSession(dec Decoder, cfg *Config) *Session { return &Session{dec: dec, cfg: cfg} }

// GenerateOptions controls one answer.
type GenerateOptions struct {
	MaxTokens int   // new tokens at most; 0 means until the context is full
	Stop      []int // token ids that end the answer (not included in it)
	Sampling  SamplingParams
	// Prefill, when set, is told after each chunk of the prompt's prefill how many of the tokens to run
	// have run.
	Prefill func(done, total int)
	// PrefillChunk is the most prompt tokens one Forward call runs; 0 means 128. Smaller chunks tell
	// Prefill more often and notice cancellation sooner, at some cost in speed.
	PrefillChunk int
	// Grammar, when set, constrains the answer (grammar.go): only tokens it allows are sampled, from the
	// logits of the whole vocabulary, and the answer ends (finish reason "stop") as soon as the grammar is
	// complete and nothing may follow. As the budget (MaxTokens, or the context) runs out, only tokens
	// that leave room to complete the answer are allowed, so an answer always parses and validates
	// unless the budget is below its shortest completion; then it is a valid prefix ("length").
	Grammar *Grammar
}

// Result describes one finished answer.
type Result struct {
	Tokens       []int  // generated ids, without the stop token
	FinishReason string // "stop" (a stop id), "length" (max tokens or context full)
	PromptTokens int    // tokens in the prompt
	Prefilled    int    // prompt tokens actually run (the rest were reused from the cache)
}

// Generate continues prompt (the whole conversation so far) and calls onToken for each new token as soon
// as it is chosen; an error from onToken, or ctx ending, stops generation and is returned.
func (s *Session) Generate(ctx context.Context, prompt []int, opt GenerateOptions, onToken func(id int) error) (Result, error) {
	res := Result{PromptTokens: len(prompt)}
	maxCtx := s.dec.MaxContext()
	if len(prompt) == 0 {
		return res, fmt.Errorf("generate: empty prompt")
	}
	if len(prompt) >= maxCtx {
		return res, fmt.Errorf("generate: prompt of %d tokens does not fit the context length %d", len(prompt), maxCtx)
	}
	sampler := NewSampler(opt.Sampling)
	context := slices.Clone(prompt)
	var grammar *Matcher
	if opt.Grammar != nil {
		grammar = opt.Grammar.NewMatcher()
	}
	// next runs tokens at pos and picks the token that follows them.
	next := func(tokens []int, pos int) (int, error) {
		if grammar != nil {
			out, err := s.dec.Forward(tokens, pos, false)
			if err != nil {
				return 0, err
			}
			left := maxCtx - len(context)
			if opt.MaxTokens > 0 {
				left = min(left, opt.MaxTokens-len(res.Tokens))
			}
			return sampleConstrained(sampler, grammar, out[0], context, left)
		}
		if td, ok := s.dec.(TopKDecoder); ok {
			if k := sampler.CandidatesNeeded(MaxTopK); k > 0 {
				ids, logits, err := td.ForwardTopK(tokens, pos, k, opt.Sampling.Penalty(), context)
				if err != nil {
					return 0, err
				}
				return sampler.SampleCandidates(ids, logits), nil
			}
		}
		out, err := s.dec.Forward(tokens, pos, false)
		if err != nil {
			return 0, err
		}
		return sampler.Sample(out[0], context), nil
	}

	chunk := opt.PrefillChunk
	if chunk <= 0 {
		chunk = prefillChunk
	}
	id, err := s.prefill(ctx, prompt, &res, chunk, opt.Prefill, next)
	if err != nil {
		return res, err
	}
	for {
		if slices.Contains(opt.Stop, id) {
			res.FinishReason = "stop"
			return res, nil
		}
		res.Tokens = append(res.Tokens, id)
		context = append(context, id)
		if err := onToken(id); err != nil {
			return res, err
		}
		if grammar != nil && grammar.Done() {
			res.FinishReason = "stop"
			return res, nil
		}
		if (opt.MaxTokens > 0 && len(res.Tokens) >= opt.MaxTokens) || len(context) >= maxCtx {
			res.FinishReason = "length"
			return res, nil
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if id, err = next([]int{id}, len(s.cached)); err != nil {
			s.cached = s.cached[:0] // the cache may be half-written: forget it
			return res, err
		}
		s.cached = append(s.cached, context[len(context)-1])
	}
}

// prefill runs the part of prompt not already cached, the last piece through next, and returns the token
// next picked.
func (s *Session) prefill(ctx context.Context, prompt []int, res *Result, chunk int, progress func(done, total int),
	next func([]int, int) (int, error)) (int, error) {
	n := 0
	for n < len(s.cached) && n < len(prompt) && s.cached[n] == prompt[n] {
		n++
	}
	n = min(n, len(prompt)-1) // the last prompt token must run: its logits pick the first answer token
	s.cached = s.cached[:n]
	res.Prefilled = len(prompt) - n
	start := n
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		end := min(n+chunk, len(prompt))
		if len(prompt) > s.cfg.MaxPositionEmbeddings {
			// Beyond max_position_embeddings dynamic NTK scales RoPE by the length of the call: run the
			// prompt in one call, as HF does, so every position gets the same rotation it would there.
			end = len(prompt)
		}
		var id int
		var err error
		if end == len(prompt) {
			id, err = next(prompt[n:end], n)
		} else {
			_, err = s.dec.Forward(prompt[n:end], n, false)
		}
		if err != nil {
			s.cached = s.cached[:0] // the cache may be half-written: forget it
			return 0, err
		}
		s.cached = append(s.cached, prompt[n:end]...)
		if progress != nil {
			progress(end-start, len(prompt)-start)
		}
		if end == len(prompt) {
			return id, nil
		}
		n = end
	}
}

// Cached is the tokens whose keys and values are in the cache, in order (the caller must not change it).
func (s *Session) Cached() []int { return s.cached }

// Reset forgets the cached conversation.
func (s *Session) Reset() { s.cached = s.cached[:0] }
