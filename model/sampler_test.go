package model

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
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

// Found by issue 13: float32 made these overflow. Temperature 1e-40 with top_p 1 picked the least likely
// token; repetition_penalty 1e-46 made a logit +Inf and every probability NaN.
func TestTinyTemperatureIsGreedy(t *testing.T) {
	logits := []float32{0.5, 3, -2, 2.9, 1}
	for _, temp := range []float64{1e-3, 1e-20, 1e-40, 1e-45, 5e-324} {
		for _, topP := range []float64{1, 0.8} {
			s := NewSampler(SamplingParams{Temperature: temp, TopP: topP, RepetitionPenalty: 1, Seed: 1})
			for range 20 {
				require.Equal(t, 1, s.Sample(slices.Clone(logits), nil), "temperature %g, top_p %g", temp, topP)
			}
		}
	}
}

func TestExtremeRepetitionPenaltyStaysFinite(t *testing.T) {
	for _, penalty := range []float64{1e-46, 1e-300, 5e-324, 1e300, math.MaxFloat64} {
		logits := []float32{2, -3, 0, 1}
		s := NewSampler(SamplingParams{Temperature: 1, TopP: 1, RepetitionPenalty: penalty, Seed: 1})
		id := s.Sample(logits, []int{0, 1, 2})
		for i, l := range logits {
			require.False(t, math.IsInf(float64(l), 0) || math.IsNaN(float64(l)), "penalty %g: logit %d is %v", penalty, i, l)
		}
		if penalty < 1 {
			require.Equal(t, 0, id, "penalty %g: the repeated positive logit 2·1024 is certain", penalty)
		} else {
			require.Equal(t, 3, id, "penalty %g: the only logit not pushed down", penalty)
		}
	}
}

// FuzzSampler checks every parameter value the API accepts (server/openai.go validate: temperature in
// [0, 2], top_p in (0, 1], top_k ≥ -1, repetition_penalty > 0, any seed): the distribution the sampler
// draws from is finite and sums to 1, the token drawn is one it gives a positive probability, and as the
// temperature goes to 0 it is the argmax.
func FuzzSampler(f *testing.F) {
	for _, s := range []struct {
		temp, topP float64
		topK       int
		penalty    float64
	}{
		{1, 0.8, 40, 1.005}, {0, 1, 0, 1}, {1e-40, 1, 0, 1}, {5e-324, 0.5, 3, 1}, {2, 1e-300, -1, 1e-46},
		{0.7, 1, 1 << 40, math.MaxFloat64}, {1e-7, 0.999999, 1, 5e-324}, {2, 1, 0, 1e300},
	} {
		f.Add(s.temp, s.topP, s.topK, s.penalty, uint64(7))
	}
	f.Fuzz(func(t *testing.T, temp, topP float64, topK int, penalty float64, seed uint64) {
		if !(temp >= 0 && temp <= 2) || !(topP > 0 && topP <= 1) || topK < -1 || !(penalty > 0) || math.IsInf(penalty, 0) {
			return // refused by the API
		}
		p := SamplingParams{Temperature: temp, TopP: topP, TopK: max(topK, 0), RepetitionPenalty: penalty, Seed: seed}
		rng := rand.New(rand.NewPCG(seed, 1))
		logits := make([]float32, 64)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 10)
		}
		logits[rng.IntN(64)] = logits[rng.IntN(64)] // a tie now and then
		var context []int
		for range rng.IntN(64) {
			context = append(context, rng.IntN(64))
		}
		penalised := slices.Clone(logits)
		if pen := p.Penalty(); pen != 1 {
			repetitionPenalty(penalised, context, pen)
		}
		best := argmax(penalised)
		unique := slices.Index(penalised[best+1:], penalised[best]) < 0

		s := NewSampler(p)
		id := s.Sample(slices.Clone(logits), context)
		require.True(t, id >= 0 && id < len(logits), "id %d", id)
		if temp == 0 || (temp < 1e-30 && unique) {
			require.Equal(t, best, id, "temperature %g picks the argmax", temp)
		}
		if temp == 0 {
			return
		}
		cand := make([]candidate, len(penalised))
		for i, l := range penalised {
			require.False(t, math.IsInf(float64(l), 0) || math.IsNaN(float64(l)), "penalised logit %d is %v", i, l)
			cand[i] = candidate{i, l}
		}
		slices.SortStableFunc(cand, func(a, b candidate) int { return cmp.Compare(b.logit, a.logit) })
		kept, probs := s.distribution(cand)
		require.NotEmpty(t, kept)
		var sum float64
		for i, q := range probs {
			require.True(t, q >= 0 && q <= 1, "probability of %d is %v", kept[i].id, q)
			sum += q
		}
		require.InDelta(t, 1, sum, 1e-9)
		i := slices.IndexFunc(kept, func(c candidate) bool { return c.id == id })
		require.True(t, i >= 0 && probs[i] > 0, "drew %d, which has no probability", id)
	})
}
