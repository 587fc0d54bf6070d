package model

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/internal/golden"
	"github.com/ilmweb/ilmweb/synth"
)

var (
	tinyOnce sync.Once
	tinyDir  string
	tinyErr  error
)

// tinyModel loads the synthetic tiny checkpoint (seed 1) the goldens were computed from.
func tinyModel(t testing.TB) *Model {
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tiny-hf-")
		if err != nil {
			tinyErr = err
			return
		}
		tinyDir = filepath.Join(dir, "tiny")
		tinyErr = synth.Write(synth.Presets["tiny"], tinyDir, 1)
	})
	require.NoError(t, tinyErr)
	m, err := Load(tinyDir)
	require.NoError(t, err)
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyDir != "" {
		os.RemoveAll(filepath.Dir(tinyDir))
	}
	os.Exit(code)
}

// loadGolden reads the independent implementation's goldens (internal/golden).
func loadGolden(t *testing.T) *golden.Tiny {
	g, err := golden.LoadTiny("..")
	require.NoError(t, err)
	return g
}

// messages converts golden.json's chat turns.
func messages(ms []golden.Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = Message{Role: m.Role, Content: m.Content}
	}
	return out
}

func TestCPUMatchesGoldenSequence(t *testing.T) {
	m := tinyModel(t)
	g := loadGolden(t)
	want := g.SequenceLogprobs
	require.Equal(t, m.Config.VocabSize, g.VocabSize)
	ids := m.Chat.Encode(messages(g.Sequence.Messages), true)
	require.Equal(t, g.Sequence.IDs, ids, "chat template ids differ from the independent rendering")
	require.Greater(t, len(ids), m.Config.MaxPositionEmbeddings, "the sequence should reach dynamic NTK RoPE")

	logits, err := NewCPU(m.Config, m.Weights, len(ids)).Forward(ids, 0, true)
	require.NoError(t, err)
	var worst float64
	for pos := range ids {
		d := golden.MaxDiff(logits[pos], want[pos])
		require.LessOrEqual(t, d, 1e-3, "position %d", pos)
		worst = math.Max(worst, d)
	}
	t.Logf("max |Δ log-prob| over %d positions: %.2e", len(ids), worst)
}

func TestCPUMatchesGoldenGreedy(t *testing.T) {
	m := tinyModel(t)
	g := loadGolden(t)
	want := g.GreedyLogprobs
	prompt := m.Chat.Encode(messages(g.Greedy.Messages), true)
	require.Equal(t, g.Greedy.PromptIDs, prompt)
	require.Less(t, len(prompt), m.Config.MaxPositionEmbeddings)
	require.Greater(t, len(prompt)+len(g.Greedy.Tokens), m.Config.MaxPositionEmbeddings+1,
		"greedy decoding should cross max_position_embeddings")

	// A decoder that records the logits of each step, to compare them as well as the tokens.
	rec := &recordingDecoder{Decoder: NewCPU(m.Config, m.Weights, 512)}
	res, err := NewSession(rec, m.Config).Generate(context.Background(), prompt,
		GenerateOptions{MaxTokens: len(g.Greedy.Tokens), Sampling: Greedy()}, func(int) error { return nil })
	require.NoError(t, err)
	require.Equal(t, g.Greedy.Tokens, res.Tokens)
	require.Equal(t, len(want), len(rec.logits), "one forward per step; the last token needs none")
	var worst float64
	for step := range want {
		d := golden.MaxDiff(rec.logits[step], want[step])
		require.LessOrEqual(t, d, 1e-3, "step %d", step)
		worst = math.Max(worst, d)
	}
	t.Logf("greedy: %d identical tokens, max |Δ log-prob| %.2e", len(res.Tokens), worst)
}

type recordingDecoder struct {
	Decoder
	logits [][]float32
}

func (r *recordingDecoder) Forward(tokens []int, pos int, all bool) ([][]float32, error) {
	out, err := r.Decoder.Forward(tokens, pos, all)
	if err == nil {
		r.logits = append(r.logits, append([]float32(nil), out[len(out)-1]...))
	}
	return out, err
}

// Prefill in one call, prefill in pieces and token-by-token decoding must agree below max_position_embeddings.
func TestForwardIncrementalMatchesFull(t *testing.T) {
	m := tinyModel(t)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, 100)
	for i := range ids {
		ids[i] = rng.IntN(m.Config.VocabSize)
	}
	full, err := NewCPU(m.Config, m.Weights, 128).Forward(ids, 0, true)
	require.NoError(t, err)
	inc := NewCPU(m.Config, m.Weights, 128)
	_, err = inc.Forward(ids[:37], 0, false)
	require.NoError(t, err)
	for i := 37; i < len(ids); i++ {
		out, err := inc.Forward(ids[i:i+1], i, false)
		require.NoError(t, err)
		for j, v := range out[0] {
			require.InDelta(t, full[i][j], v, 1e-4+1e-4*math.Abs(float64(v)), "pos %d logit %d", i, j)
		}
	}
}

func TestForwardRejectsBadInput(t *testing.T) {
	m := tinyModel(t)
	cpu := NewCPU(m.Config, m.Weights, 8)
	_, err := cpu.Forward([]int{1, 2, 3}, 6, false)
	require.ErrorContains(t, err, "context length 8")
	_, err = cpu.Forward([]int{m.Config.VocabSize}, 0, false)
	require.ErrorContains(t, err, "outside vocab")
	_, err = cpu.Forward(nil, 0, false)
	require.Error(t, err)
}

func TestRopeInvFreqDynamicNTK(t *testing.T) {
	c := &Config{HeadDim: 128, RopeTheta: 5e7, MaxPositionEmbeddings: 32768, RopeScaling: &RopeScaling{Factor: 6, RopeType: "dynamic"}}
	plain := RopeInvFreq(c, 32768)
	require.InDelta(t, 1, plain[0], 0)
	require.InDelta(t, math.Pow(5e7, -2.0/128), plain[1], 1e-7)
	// Above max_position_embeddings: theta' = theta·((factor·L/max) − (factor−1))^(d/(d−2)).
	L := 65536
	scaled := RopeInvFreq(c, L)
	base := 5e7 * math.Pow(6.0*float64(L)/32768-5, 128.0/126)
	for i, v := range scaled {
		require.InEpsilon(t, math.Pow(base, -float64(2*i)/128), v, 1e-6, "dim %d", i)
	}
	c.RopeScaling = nil
	require.Equal(t, plain, RopeInvFreq(c, L), "without rope_scaling there is no NTK")
}

func TestRopeRotatesHalves(t *testing.T) {
	// One head of dim 4: pairs (0,2) and (1,3); inv_freq [1, 0.5]; position 2 rotates by 2 and 1 radians.
	x := []float32{1, 1, 0, 0}
	Rope(x, 1, 4, 2, []float32{1, 0.5})
	require.InDelta(t, math.Cos(2), x[0], 1e-6)
	require.InDelta(t, math.Cos(1), x[1], 1e-6)
	require.InDelta(t, math.Sin(2), x[2], 1e-6)
	require.InDelta(t, math.Sin(1), x[3], 1e-6)
}
