package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The f32 kernels against their twins on lengths around the 16- and 64-wide steps, with guard cells.
func TestF32KernelsMatchTwins(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{1, 15, 16, 17, 63, 64, 65, 128, 200, 4096} {
		a, b := make([]float32, n), make([]float32, n+3)
		var mag float64
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			mag += math.Abs(float64(a[i] * b[i]))
		}
		require.InDelta(t, dot(a, b), fastDot(a, b), 1e-6*mag, "dot n=%d", n)

		y := make([]float32, n+2)
		for i := range y {
			y[i] = float32(rng.NormFloat64())
		}
		want := append([]float32(nil), y...)
		axpy(want[:n], b, 0.37)
		got := append([]float32(nil), y...)
		fastAxpy(got[:n], b, 0.37)
		require.InDeltaSlice(t, want, got, 1e-6, "axpy n=%d", n) // the guard cells past n equal y's
		require.Equal(t, y[n:], got[n:], "axpy n=%d wrote past y", n)
	}
}
