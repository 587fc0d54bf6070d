package model

import (
	"container/heap"
	"slices"
)

// sampleConstrained picks the next token of a constrained answer from the logits of the whole vocabulary:
// only tokens the grammar allows, and, with left tokens of budget including this one, only tokens after
// which the answer can still be completed in time. The budget is checked on the sampled token; only if it
// would not leave room is the mask narrowed to the tokens that do (FitMask) and the token drawn again, so
// the costlier mask is built only at the very end of an answer. If the budget is below the shortest
// completion, the tokens that bring the end closest are taken, and if it still does not fit the answer is
// cut (a valid prefix, finish reason "length").
func sampleConstrained(s *Sampler, m *Matcher, logits []float32, context []int, left int) (int, error) {
	mask := m.Mask()
	if mask.empty() {
		return 0, errNoToken
	}
	orig := slices.Clone(logits)
	id := s.SampleAllowed(logits, context, mask)
	if !m.Fits(id, left-1) {
		if fit := m.FitMask(left - 1); !fit.empty() {
			id = s.SampleAllowed(orig, context, fit)
		}
	}
	m.Accept(id)
	return id, nil
}

var errNoToken = grammarError("grammar: no token of the vocabulary can continue the answer")

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

// SampleAllowed is Sample restricted to the ids in allowed (which must not be empty). With top-k it
// selects the k best allowed tokens (and those tied with the k-th) with a heap instead of sorting the
// vocabulary.
func (s *Sampler) SampleAllowed(logits []float32, context []int, allowed bitset) int {
	if s.p.RepetitionPenalty != 1 && s.p.RepetitionPenalty > 0 {
		repetitionPenalty(logits, context, float32(s.p.RepetitionPenalty))
	}
	keep := len(logits)
	switch {
	case s.p.Temperature <= 0:
		keep = 1
	case s.p.TopK > 0:
		keep = s.p.TopK
	}
	var cand []candidate
	if keep < len(logits) {
		// The keep best so far, worst on top; ties between allowed ids resolved toward the lower id.
		h := &worstFirst{}
		for id, l := range logits {
			if !allowed.has(id) {
				continue
			}
			if h.Len() < keep {
				heap.Push(h, candidate{id, l})
			} else if l > (*h)[0].logit {
				(*h)[0] = candidate{id, l}
				heap.Fix(h, 0)
			}
		}
		kth := (*h)[0].logit
		for id, l := range logits { // HF keeps every token tied with the k-th
			if allowed.has(id) && l >= kth {
				cand = append(cand, candidate{id, l})
			}
		}
	} else {
		for id, l := range logits {
			if allowed.has(id) {
				cand = append(cand, candidate{id, l})
			}
		}
	}
	// Highest logit first; equal logits keep id order (as Sample does).
	slices.SortStableFunc(cand, func(a, b candidate) int {
		switch {
		case a.logit > b.logit:
			return -1
		case a.logit < b.logit:
			return 1
		}
		return 0
	})
	if s.p.Temperature <= 0 {
		return cand[0].id
	}
	return s.pick(cand)
}

// worstFirst is a min-heap of candidates by logit.
type worstFirst []candidate

func (h worstFirst) Len() int           { return len(h) }
func (h worstFirst) Less(i, j int) bool { return h[i].logit < h[j].logit }
func (h worstFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *worstFirst) Push(x any)        { *h = append(*h, x.(candidate)) }
func (h *worstFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
