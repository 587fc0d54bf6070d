package webgpu

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The autotune measures once per device and shapes, forced variants override it, and unknown ones are
// refused by name.
func TestAutotune(t *testing.T) {
	d := testDevice(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the user cache dir natively: start without a cached choice
	t.Setenv("HOME", t.TempDir())
	cfg, w := randomModel(3, 999)
	o := Options{MaxContext: 300}
	first, err := NewWithOptions(d, cfg, w, o)
	require.NoError(t, err)
	defer first.Close()
	tu := first.Tuning()
	t.Logf("autotune on %s: %v; candidates %v", d.Adapter, tu, tu.Times)
	require.Contains(t, []string{"measured", "device"}, tu.Source)
	require.Contains(t, MatvecVariants(), tu.Kernels.Matvec)
	require.Contains(t, AttentionVariants(), tu.Kernels.Attention)
	require.Contains(t, MatmulVariants(), tu.Kernels.Matmul)
	for _, v := range MatmulVariants() { // every variant the device runs was timed
		if d.checkKernels(Kernels{Matmul: v}) == nil {
			require.Contains(t, tu.Times, "matmul "+v)
		}
	}

	clear(d.tuned) // a new load on this adapter: the cache file answers
	second, err := NewWithOptions(d, cfg, w, o)
	require.NoError(t, err)
	defer second.Close()
	require.Equal(t, "cache", second.Tuning().Source)
	require.Equal(t, tu.Kernels, second.Tuning().Kernels)

	o.Kernels = Kernels{Attention: "split8"}
	forced, err := NewWithOptions(d, cfg, w, o)
	require.NoError(t, err)
	defer forced.Close()
	require.Equal(t, Kernels{Matvec: tu.Kernels.Matvec, Attention: "split8", Matmul: tu.Kernels.Matmul}, forced.Tuning().Kernels)
	require.Equal(t, "forced", forced.Tuning().Source)

	// a budget of its own measures again, stored choice or not, and times every candidate within a long one
	o.Kernels, o.TuneBudget = Kernels{}, time.Minute
	again, err := NewWithOptions(d, cfg, w, o)
	require.NoError(t, err)
	defer again.Close()
	require.Equal(t, "measured", again.Tuning().Source)
	require.Empty(t, again.Tuning().Skipped)
	require.Equal(t, "wall time of a submit", again.Tuning().Clock) // natively: the binding has no timestamp writes
	for _, v := range MatvecVariants() {
		if d.checkKernels(Kernels{Matvec: v}) == nil && !strings.HasPrefix(v, "q8") {
			require.Contains(t, again.Tuning().Times, "matvec "+v)
		}
	}
	for _, v := range AttentionVariants() {
		require.Contains(t, again.Tuning().Times, "attention "+v)
	}
	t.Logf("every candidate timed: %v in %v", again.Tuning().Times, again.Tuning().Took)

	_, err = NewWithOptions(d, cfg, w, Options{MaxContext: 300, Kernels: Kernels{Matvec: "fastest"}})
	require.ErrorContains(t, err, `matvec variant "fastest": not one of [wg64`)
	_, err = NewWithOptions(d, cfg, w, Options{MaxContext: 300, Kernels: Kernels{Attention: "split3"}})
	require.ErrorContains(t, err, `attention variant "split3"`)
	_, err = NewWithOptions(d, cfg, w, Options{MaxContext: 300, Kernels: Kernels{Matmul: "huge"}})
	require.ErrorContains(t, err, `matmul variant "huge": not one of [tiled subgroup]`)
}
