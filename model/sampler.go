package model

import (
	"math"
	"math/rand/v2"
	"slices"
)

// SamplingParams follow Hugging Face generate() semantics. Temperature 0 means greedy.
type SamplingParams struct {
	Temperature       float64
	TopK              int     // 0 disables
	TopP              float64 // 1 disables
	RepetitionPenalty float64 // 1 disables
	Seed              uint64
}

// DefaultSampling is InternLM3's recommended setting (MODEL.md).
func DefaultSampling() SamplingParams {
	return SamplingParams{Temperature: 1, TopK: 40, TopP: 0.8, RepetitionPenalty: 1.005}
}

// Greedy always picks the most likely token.
func Greedy() SamplingParams {
	return SamplingParams{Temperature: 0, TopP: 1, RepetitionPenalty: 1}
}

// Sampler picks the next token from logits; its random stream is fixed by the seed.
type Sampler struct {
	p   SamplingParams
	rng *rand.Rand
}

// NewSampler returns a sampler for p.
func NewSampler(p SamplingParams) *Sampler {
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15))}
}

// Sample returns the next token id. context holds the ids seen so far (prompt and generated), for the
// repetition penalty. logits is modified in place.
func (s *Sampler) Sample(logits []float32, context []int) int {
	if s.p.RepetitionPenalty != 1 && s.p.RepetitionPenalty > 0 {
		repetitionPenalty(logits, context, float32(s.p.RepetitionPenalty))
	}
	if s.p.Temperature <= 0 {
		return argmax(logits)
	}
	cand := make([]candidate, len(logits))
	for i, l := range logits {
		cand[i] = candidate{i, l}
	}
	// Highest logit first; equal logits keep id order so results are reproducible.
	slices.SortStableFunc(cand, func(a, b candidate) int {
		switch {
		case a.logit > b.logit:
			return -1
		case a.logit < b.logit:
			return 1
		}
		return 0
	})
	return s.pick(cand)
}

// CandidatesNeeded says how many of the best tokens SampleCandidates needs to behave exactly like Sample:
// 1 for greedy, top_k when sampling with top_k ≤ max, and 0 when it needs the whole vocabulary.
func (s *Sampler) CandidatesNeeded(max int) int {
	switch {
	case s.p.Temperature <= 0:
		return 1
	case s.p.TopK > 0 && s.p.TopK <= max:
		return s.p.TopK
	}
	return 0
}

// SampleCandidates picks the next token from the best CandidatesNeeded tokens, already penalised for
// repetition and sorted by descending logit (ties: lower id first), as a TopKDecoder returns them.
func (s *Sampler) SampleCandidates(ids []int, logits []float32) int {
	if s.p.Temperature <= 0 {
		return ids[0]
	}
	cand := make([]candidate, len(ids))
	for i := range ids {
		cand[i] = candidate{ids[i], logits[i]}
	}
	return s.pick(cand)
}

// pick applies temperature, then top-k, then top-p, as HF's warpers are ordered, and draws a token from
// cand (penalised logits sorted by descending logit).
func (s *Sampler) pick(cand []candidate) int {
	for i := range cand {
		cand[i].logit /= float32(s.p.Temperature)
	}
	if k := s.p.TopK; k > 0 && k < len(cand) {
		// HF keeps every token whose logit is at least the k-th largest (ties survive).
		kth := cand[k-1].logit
		n := k
		for n < len(cand) && cand[n].logit >= kth {
			n++
		}
		cand = cand[:n]
	}
	probs := softmaxCandidates(cand)
	if p := s.p.TopP; p > 0 && p < 1 {
		// HF removes the tokens whose ascending cumulative probability is <= 1-top_p, keeping at least one.
		// Walking from the least likely token: drop while the running sum stays within 1-top_p.
		var cum float64
		n := len(cand)
		for n > 1 {
			cum += probs[n-1]
			if cum > 1-p {
				break
			}
			n--
		}
		cand, probs = cand[:n], probs[:n]
		var sum float64
		for _, q := range probs {
			sum += q
		}
		for i := range probs {
			probs[i] /= sum
		}
	}
	r := s.rng.Float64()
	for i, q := range probs {
		r -= q
		if r < 0 {
			return cand[i].id
		}
	}
	return cand[len(cand)-1].id
}

type candidate struct {
	id    int
	logit float32
}

// softmaxCandidates returns the probabilities of cand (sorted by descending logit), in float64.
func softmaxCandidates(cand []candidate) []float64 {
	probs := make([]float64, len(cand))
	maxL := float64(cand[0].logit)
	var sum float64
	for i, c := range cand {
		probs[i] = math.Exp(float64(c.logit) - maxL)
		sum += probs[i]
	}
	for i := range probs {
		probs[i] /= sum
	}
	return probs
}

// repetitionPenalty applies HF's rule to every id already in context: a positive logit is divided by p,
// a negative one multiplied by p. Each id is penalised once however often it occurred.
func repetitionPenalty(logits []float32, context []int, p float32) {
	seen := make(map[int]bool, len(context))
	for _, id := range context {
		if id < 0 || id >= len(logits) || seen[id] {
			continue
		}
		seen[id] = true
		if logits[id] > 0 {
			logits[id] /= p
		} else {
			logits[id] *= p
		}
	}
}

// argmax returns the index of the largest value, the lowest index on ties (as torch.argmax does).
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
