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

// Bounds of the repetition penalty as it is applied. Beyond them nothing changes in practice (a repeated
// token is already certain, or impossible), while in float32 a penalty like 1e-46 is 0 and dividing by it
// makes a logit +Inf, and the probabilities NaN.
const (
	MinRepetitionPenalty = 1.0 / 1024
	MaxRepetitionPenalty = 1024
)

// Penalty is the repetition penalty as the CPU and GPU apply it: RepetitionPenalty within
// [MinRepetitionPenalty, MaxRepetitionPenalty], or 1 (none) when it is 1 or not positive.
func (p SamplingParams) Penalty() float32 {
	if p.RepetitionPenalty <= 0 {
		return 1
	}
	return float32(min(max(p.RepetitionPenalty, MinRepetitionPenalty), MaxRepetitionPenalty))
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
	if p := s.p.Penalty(); p != 1 {
		repetitionPenalty(logits, context, p)
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

// pick draws a token from distribution(cand).
func (s *Sampler) pick(cand []candidate) int {
	cand, probs := s.distribution(cand)
	r := s.rng.Float64()
	for i, q := range probs {
		r -= q
		if r < 0 {
			return cand[i].id
		}
	}
	return cand[0].id // what rounding left of r: the most likely token, which never has probability 0
}

// distribution applies temperature, then top-k, then top-p, as HF's warpers are ordered, to cand
// (penalised logits sorted by descending logit) and returns the tokens left with their probabilities.
// Top-k compares the logits before the temperature divides them, which keeps their order.
func (s *Sampler) distribution(cand []candidate) ([]candidate, []float64) {
	if k := s.p.TopK; k > 0 && k < len(cand) {
		// HF keeps every token whose logit is at least the k-th largest (ties survive).
		kth := cand[k-1].logit
		n := k
		for n < len(cand) && cand[n].logit >= kth {
			n++
		}
		cand = cand[:n]
	}
	probs := softmaxCandidates(cand, s.p.Temperature)
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
	return cand, probs
}

type candidate struct {
	id    int
	logit float32
}

// softmaxCandidates returns softmax(logit / temperature) of cand (sorted by descending logit). It divides
// in float64 after subtracting the largest logit: a tiny temperature then sends every other logit to
// exp(-Inf) = 0, which is greedy, where dividing in float32 first made them ±Inf and the probabilities NaN.
func softmaxCandidates(cand []candidate, temperature float64) []float64 {
	probs := make([]float64, len(cand))
	maxL := float64(cand[0].logit)
	var sum float64
	for i, c := range cand {
		probs[i] = math.Exp((float64(c.logit) - maxL) / temperature)
		sum += probs[i]
	}
	for i := range probs {
		probs[i] /= sum
	}
	return probs
}

// repetitionPenalty applies HF's rule to every id already in context: a positive logit is divided by p,
// a negative one multiplied by p (Penalty keeps it in a range where no finite logit overflows). Each id is
// penalised once however often it occurred.
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
