// Package golden reads testdata/golden/tiny: log-probs of the synthetic tiny checkpoint (synth -preset tiny
// -seed 1) computed by an independent PyTorch implementation (tools/golden_logits.py), which the CPU and GPU
// engines are tested against. It also holds the comparison both use.
package golden

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Message is a chat turn as golden.json records it.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Tiny is golden.json with its two log-prob files.
type Tiny struct {
	VocabSize int `json:"vocab_size"`
	Sequence  struct {
		Messages []Message `json:"messages"`
		IDs      []int     `json:"ids"` // the chat template's rendering, with the generation prompt
	} `json:"sequence"`
	Greedy struct {
		Messages  []Message `json:"messages"`
		PromptIDs []int     `json:"prompt_ids"`
		Tokens    []int     `json:"tokens"` // 64 greedy tokens, never stopping at eos
	} `json:"greedy"`
	SequenceLogprobs [][]float32 `json:"-"` // [len(Sequence.IDs)][vocab], one forward over the whole sequence
	GreedyLogprobs   [][]float32 `json:"-"` // [64][vocab], at each greedy step with the KV cache
}

// LoadTiny reads testdata/golden/tiny below root (the repository root, relative to the test's package).
func LoadTiny(root string) (*Tiny, error) {
	dir := filepath.Join(root, "testdata", "golden", "tiny")
	data, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		return nil, err
	}
	g := &Tiny{}
	if err := json.Unmarshal(data, g); err != nil {
		return nil, fmt.Errorf("golden.json: %w", err)
	}
	if g.SequenceLogprobs, err = readRows(filepath.Join(dir, "sequence_logprobs.f32"), g.VocabSize); err != nil {
		return nil, err
	}
	if g.GreedyLogprobs, err = readRows(filepath.Join(dir, "greedy_logprobs.f32"), g.VocabSize); err != nil {
		return nil, err
	}
	return g, nil
}

// readRows reads little-endian float32 rows of n values.
func readRows(path string, n int) ([][]float32, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if n <= 0 || len(raw)%(4*n) != 0 {
		return nil, fmt.Errorf("%s: %d bytes is not a whole number of rows of %d float32", path, len(raw), n)
	}
	rows := make([][]float32, len(raw)/(4*n))
	for i := range rows {
		rows[i] = make([]float32, n)
		for j := range rows[i] {
			rows[i][j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(i*n+j):]))
		}
	}
	return rows, nil
}

// LogSoftmax is log_softmax in float64.
func LogSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - lse
	}
	return out
}

// MaxDiff is max |log_softmax(logits) − want| over a row, want being log-probs.
func MaxDiff(logits, want []float32) float64 {
	var d float64
	for i, v := range LogSoftmax(logits) {
		d = math.Max(d, math.Abs(v-float64(want[i])))
	}
	return d
}

// LogprobDiff is max |log_softmax(got) − log_softmax(want)| over a row of logits.
func LogprobDiff(got, want []float32) float64 {
	var d float64
	w := LogSoftmax(want)
	for i, v := range LogSoftmax(got) {
		d = math.Max(d, math.Abs(v-w[i]))
	}
	return d
}
