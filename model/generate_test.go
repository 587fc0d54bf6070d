package model

import (
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSessionReusesSharedPrefix(t *testing.T) {
	m := tinyModel(t)
	conv := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi there"}}
	opt := GenerateOptions{MaxTokens: 8, Stop: m.Stop, Sampling: Greedy()}
	nop := func(int) error { return nil }

	s := NewSession(NewCPU(m.Config, m.Weights, 256), m.Config)
	first, err := s.Generate(context.Background(), m.Chat.Encode(conv, true), opt, nop)
	require.NoError(t, err)
	require.Equal(t, first.PromptTokens, first.Prefilled)

	conv = append(conv, Message{Role: "assistant", Content: m.Tokenizer.Decode(first.Tokens)},
		Message{Role: "user", Content: "And again?"})
	prompt := m.Chat.Encode(conv, true)
	second, err := s.Generate(context.Background(), prompt, opt, nop)
	require.NoError(t, err)
	require.Less(t, second.Prefilled, second.PromptTokens/2, "the second turn should prefill only its new tokens")

	fresh, err := NewSession(NewCPU(m.Config, m.Weights, 256), m.Config).Generate(context.Background(), prompt, opt, nop)
	require.NoError(t, err)
	require.Equal(t, fresh.Tokens, second.Tokens, "reusing the cache must not change the answer")
	require.Equal(t, second.PromptTokens, fresh.Prefilled)
}

func TestGenerateStopsAndLimits(t *testing.T) {
	m := tinyModel(t)
	prompt := m.Chat.Encode([]Message{{Role: "user", Content: "Count to ten."}}, true)
	nop := func(int) error { return nil }
	newSession := func() *Session { return NewSession(NewCPU(m.Config, m.Weights, 64), m.Config) }

	res, err := newSession().Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 5, Sampling: Greedy()}, nop)
	require.NoError(t, err)
	require.Len(t, res.Tokens, 5)
	require.Equal(t, "length", res.FinishReason)

	// Stopping on the second greedy token: the answer is the first token only.
	res2, err := newSession().Generate(context.Background(), prompt,
		GenerateOptions{MaxTokens: 5, Stop: []int{res.Tokens[1]}, Sampling: Greedy()}, nop)
	require.NoError(t, err)
	if res.Tokens[0] != res.Tokens[1] {
		require.Equal(t, res.Tokens[:1], res2.Tokens)
		require.Equal(t, "stop", res2.FinishReason)
	}

	// The context (64) fills before max tokens.
	res3, err := newSession().Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 1000, Sampling: Greedy()}, nop)
	require.NoError(t, err)
	require.Equal(t, 64, len(prompt)+len(res3.Tokens))
	require.Equal(t, "length", res3.FinishReason)

	_, err = newSession().Generate(context.Background(), make([]int, 64), GenerateOptions{Sampling: Greedy()}, nop)
	require.ErrorContains(t, err, "context length 64")
}

func TestGenerateCancellation(t *testing.T) {
	m := tinyModel(t)
	prompt := m.Chat.Encode([]Message{{Role: "user", Content: "Tell me a story."}}, true)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	res, err := NewSession(NewCPU(m.Config, m.Weights, 256), m.Config).Generate(ctx, prompt,
		GenerateOptions{MaxTokens: 100, Sampling: Greedy()}, func(int) error {
			n++
			if n == 3 {
				cancel()
			}
			return nil
		})
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, res.Tokens, 3)

	boom := errors.New("client went away")
	_, err = NewSession(NewCPU(m.Config, m.Weights, 256), m.Config).Generate(context.Background(), prompt,
		GenerateOptions{MaxTokens: 100, Sampling: Greedy()}, func(int) error { return boom })
	require.ErrorIs(t, err, boom)
}

func TestFitDropsOldestTurns(t *testing.T) {
	m := tinyModel(t)
	conv := []Message{{Role: "system", Content: "S"}}
	for i := 0; i < 20; i++ {
		conv = append(conv, Message{Role: "user", Content: "question number something long enough"},
			Message{Role: "assistant", Content: "an answer that also takes some tokens"})
	}
	conv = append(conv, Message{Role: "user", Content: "last"})
	kept, ids, err := m.Chat.Fit(conv, 120, 30)
	require.NoError(t, err)
	require.LessOrEqual(t, len(ids)+30, 120)
	require.Equal(t, conv[0], kept[0], "system prompt kept")
	require.Equal(t, conv[len(conv)-1], kept[len(kept)-1], "last message kept")
	require.Less(t, len(kept), len(conv))
	require.Equal(t, m.Chat.Encode(kept, true), ids)

	_, _, err = m.Chat.Fit(conv, 10, 5)
	require.ErrorContains(t, err, "context length 10")
}

// cpuTopK is a TopKDecoder made of the CPU decoder and a sort, as a GPU engine would answer.
type cpuTopK struct{ *CPU }

func (c cpuTopK) ForwardTopK(tokens []int, pos, k int, penalty float32, context []int) ([]int, []float32, error) {
	out, err := c.Forward(tokens, pos, false)
	if err != nil {
		return nil, nil, err
	}
	logits := out[0]
	repetitionPenalty(logits, context, penalty)
	ids := make([]int, len(logits))
	for i := range ids {
		ids[i] = i
	}
	sort.SliceStable(ids, func(a, b int) bool { return logits[ids[a]] > logits[ids[b]] })
	ids = ids[:k]
	top := make([]float32, k)
	for i, id := range ids {
		top[i] = logits[id]
	}
	return ids, top, nil
}

// Sampling from the device's top-k candidates must give exactly the tokens sampling from all logits gives.
func TestTopKDecoderSamplesLikeFullLogits(t *testing.T) {
	m := tinyModel(t)
	prompt := m.Chat.Encode([]Message{{Role: "user", Content: "Tell me about the sea."}}, true)
	for _, p := range []SamplingParams{
		Greedy(),
		{Temperature: 0, TopP: 1, RepetitionPenalty: 1.3},
		{Temperature: 1, TopK: 40, TopP: 0.8, RepetitionPenalty: 1.005, Seed: 3},
		{Temperature: 0.7, TopK: 64, TopP: 1, RepetitionPenalty: 1.2, Seed: 4},
	} {
		opt := GenerateOptions{MaxTokens: 40, Sampling: p}
		nop := func(int) error { return nil }
		want, err := NewSession(NewCPU(m.Config, m.Weights, 256), m.Config).Generate(context.Background(), prompt, opt, nop)
		require.NoError(t, err)
		got, err := NewSession(cpuTopK{NewCPU(m.Config, m.Weights, 256)}, m.Config).Generate(context.Background(), prompt, opt, nop)
		require.NoError(t, err)
		require.Equal(t, want.Tokens, got.Tokens, "%+v", p)
	}
}

// Prefill progress comes after each chunk of the prompt's new tokens, ending at all of them.
func TestGeneratePrefillProgress(t *testing.T) {
	m := tinyModel(t)
	prompt := make([]int, 2*prefillChunk+50)
	for i := range prompt {
		prompt[i] = 10 + i%500
	}
	// The session runs a prompt longer than max_position_embeddings in one call (dynamic NTK): raise it.
	cfg := *m.Config
	cfg.MaxPositionEmbeddings = len(prompt) + 8
	s := NewSession(NewCPU(m.Config, m.Weights, len(prompt)+8), &cfg)
	var got [][2]int
	opt := GenerateOptions{MaxTokens: 1, Sampling: Greedy(), Prefill: func(done, total int) { got = append(got, [2]int{done, total}) }}
	_, err := s.Generate(context.Background(), prompt, opt, func(int) error { return nil })
	require.NoError(t, err)
	n := len(prompt)
	require.Equal(t, [][2]int{{prefillChunk, n}, {2 * prefillChunk, n}, {n, n}}, got)

	// the next turn runs only its new tokens
	got = nil
	_, err = s.Generate(context.Background(), append(prompt, 7, 8, 9), opt, func(int) error { return nil })
	require.NoError(t, err)
	require.Equal(t, [][2]int{{3, 3}}, got)
}

// A smaller prefill chunk tells progress more often, can be stopped between chunks, and changes nothing else.
func TestGeneratePrefillChunk(t *testing.T) {
	m := tinyModel(t)
	prompt := make([]int, 23)
	for i := range prompt {
		prompt[i] = 10 + 7*i
	}
	run := func(chunk int, progress func(done, total int)) Result {
		s := NewSession(NewCPU(m.Config, m.Weights, 64), m.Config)
		opt := GenerateOptions{MaxTokens: 6, Sampling: Greedy(), PrefillChunk: chunk, Prefill: progress}
		res, err := s.Generate(context.Background(), prompt, opt, func(int) error { return nil })
		require.NoError(t, err)
		return res
	}
	var got [][2]int
	small := run(5, func(done, total int) { got = append(got, [2]int{done, total}) })
	require.Equal(t, [][2]int{{5, 23}, {10, 23}, {15, 23}, {20, 23}, {23, 23}}, got)
	require.Equal(t, run(0, nil).Tokens, small.Tokens)

	// cancelled after the first chunk: the prefill stops there
	ctx, cancel := context.WithCancel(context.Background())
	s := NewSession(NewCPU(m.Config, m.Weights, 64), m.Config)
	got = nil
	opt := GenerateOptions{MaxTokens: 6, Sampling: Greedy(), PrefillChunk: 5,
		Prefill: func(done, total int) { got = append(got, [2]int{done, total}); cancel() }}
	_, err := s.Generate(ctx, prompt, opt, func(int) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, [][2]int{{5, 23}}, got)
	require.Equal(t, prompt[:5], s.Cached(), "what was prefilled stays cached")
}
