package model

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGreedyPicksArgmaxLowestIDOnTies(t *testing.T) {
	s := NewSampler(Greedy())
	require.Equal(t, 2, s.Sample([]float32{0, 1, 3, 3, -1}, nil))
}

func TestRepetitionPenaltyHF(t *testing.T) {
	logits := []float32{2, -2, 2, -2}
	repetitionPenalty(logits, []int{0, 1, 1, 1}, 2)
	require.Equal(t, []float32{1, -4, 2, -2}, logits, "positive divided, negative multiplied, once per id")

	// Greedy also applies the penalty, as HF's greedy search does.
	p := Greedy()
	p.RepetitionPenalty = 3
	require.Equal(t, 1, NewSampler(p).Sample([]float32{2, 1}, []int{0}))
}

// frequencies samples n times and returns how often each id came up.
func frequencies(p SamplingParams, logits []float32, n int) []float64 {
	s := NewSampler(p)
	f := make([]float64, len(logits))
	buf := make([]float32, len(logits))
	for i := 0; i < n; i++ {
		copy(buf, logits)
		f[s.Sample(buf, nil)] += 1 / float64(n)
	}
	return f
}

func softmax64(x []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	var s float64
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = math.Exp(v - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func TestSamplingMatchesDistribution(t *testing.T) {
	logits := []float32{1, 2, 0.5, 3, -1}
	cases := []struct {
		name string
		p    SamplingParams
		want []float64
	}{
		// temperature 2: softmax(logits/2) over everything
		{"temperature", SamplingParams{Temperature: 2, TopP: 1, RepetitionPenalty: 1},
			softmax64([]float64{0.5, 1, 0.25, 1.5, -0.5})},
		// top-k 2 keeps ids 3 and 1
		{"top-k", SamplingParams{Temperature: 1, TopK: 2, TopP: 1, RepetitionPenalty: 1},
			func() []float64 {
				p := softmax64([]float64{2, 3})
				return []float64{0, p[0], 0, p[1], 0}
			}()},
		// probs: 3:.62 1:.23 0:.08 2:.05 4:.01; top-p 0.8 keeps the fewest tokens reaching 0.8: ids 3, 1
		{"top-p", SamplingParams{Temperature: 1, TopP: 0.8, RepetitionPenalty: 1},
			func() []float64 {
				p := softmax64([]float64{2, 3})
				return []float64{0, p[0], 0, p[1], 0}
			}()},
		// top-p 0.9 also keeps id 0 (.62+.23 = .85 < .9)
		{"top-p wider", SamplingParams{Temperature: 1, TopP: 0.9, RepetitionPenalty: 1},
			func() []float64 {
				p := softmax64([]float64{1, 2, 3})
				return []float64{p[0], p[1], 0, p[2], 0}
			}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := frequencies(tc.p, logits, 40000)
			for i := range got {
				require.InDelta(t, tc.want[i], got[i], 0.012, "id %d: %v vs %v", i, got, tc.want)
			}
		})
	}
}

func TestTopKKeepsTies(t *testing.T) {
	got := frequencies(SamplingParams{Temperature: 1, TopK: 1, TopP: 1, RepetitionPenalty: 1}, []float32{5, 1, 5}, 4000)
	require.InDelta(t, 0.5, got[0], 0.05)
	require.InDelta(t, 0.5, got[2], 0.05)
	require.Zero(t, got[1])
}

func TestSeedReproducible(t *testing.T) {
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	run := func(seed uint64) []int {
		p := DefaultSampling()
		p.Seed = seed
		s := NewSampler(p)
		var ids []int
		for i := 0; i < 50; i++ {
			buf := append([]float32(nil), logits...)
			ids = append(ids, s.Sample(buf, ids))
		}
		return ids
	}
	require.Equal(t, run(7), run(7))
	require.NotEqual(t, run(7), run(8))
}
