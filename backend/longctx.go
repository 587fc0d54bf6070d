package backend

import (
	"fmt"
	"time"
)

// ContextSpeed is decode speed with the KV cache filled up to Position.
type ContextSpeed struct {
	Position   int     `json:"position"`
	TokPerSec  float64 `json:"tok_s"`
	RatioToPos float64 `json:"ratio_to_first"` // TokPerSec over the first position's
}

// DecodeAt times decoding tokens tokens (after one untimed) from each of positions, whatever the cache holds
// there: the work per token depends on the position, not on the values, so no prompt of that length has to
// be prefilled first.
func DecodeAt(b *Backend, positions []int, tokens int) ([]ContextSpeed, error) {
	var out []ContextSpeed
	for _, pos := range positions {
		if pos < 0 || pos+tokens+1 > b.MaxContext() {
			return nil, fmt.Errorf("bench: position %d + %d tokens must fit the context of %d", pos, tokens+1, b.MaxContext())
		}
		if _, err := b.Forward([]int{1}, pos, false); err != nil { // warm-up
			return nil, err
		}
		start := time.Now()
		for i := range tokens {
			if _, err := b.Forward([]int{1}, pos+1+i, false); err != nil {
				return nil, err
			}
		}
		s := ContextSpeed{Position: pos, TokPerSec: float64(tokens) / time.Since(start).Seconds()}
		s.RatioToPos = 1
		if len(out) > 0 {
			s.RatioToPos = s.TokPerSec / out[0].TokPerSec
		}
		out = append(out, s)
	}
	return out, nil
}
