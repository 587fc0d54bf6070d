package model

import "slices"

// steerWindow: when the shortest completion of a constrained answer comes within this many tokens of the
// budget, every allowed token is checked to still leave room to complete (FitMask). Before that, only the
// sampled token is checked, and the mask narrowed only if it would not leave room.
const steerWindow = 8

// sampleConstrained picks the next token of a constrained answer from the logits of the whole vocabulary:
// only tokens the grammar allows, and, with left tokens of budget including this one, only tokens after
// which the answer can still be completed in time. If the budget is below the shortest completion the
// answer is cut (a valid prefix, finish reason "length").
func sampleConstrained(s *Sampler, m *Matcher, logits []float32, context []int, left int) (int, error) {
	mask := m.Mask()
	if m.Remaining()+steerWindow >= left {
		if fit := m.FitMask(left - 1); !fit.empty() {
			mask = fit
		}
	}
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

// SampleAllowed is Sample restricted to the ids in allowed (which must not be empty).
func (s *Sampler) SampleAllowed(logits []float32, context []int, allowed bitset) int {
	if s.p.RepetitionPenalty != 1 && s.p.RepetitionPenalty > 0 {
		repetitionPenalty(logits, context, float32(s.p.RepetitionPenalty))
	}
	var cand []candidate
	for id, l := range logits {
		if allowed.has(id) {
			cand = append(cand, candidate{id, l})
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
