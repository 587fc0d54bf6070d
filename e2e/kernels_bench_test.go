package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ilmweb/ilmweb/webgpu"
)

// TestBrowserKernels measures every kernel variant in the browser (WebGPU on SwiftShader here) on a
// full-size-width model: the autotune with a budget long enough to time every candidate, each candidate's
// weight bytes/s as a ratio to a copy probe run from JavaScript on the same adapter in the same page, then
// decode with each matvec variant forced and prefill with each matmul variant forced, as ratios too. It
// runs only when KERNELS_MODEL names a converted model (tools/bench-kernels-browser.sh makes the
// full-width 2-layer one); the numbers are in docs/BENCHMARKS.md.
func TestBrowserKernels(t *testing.T) {
	s := newTestServer(t, &fakeModel{dir: measuredModel(t, "KERNELS_MODEL", "tools/bench-kernels-browser.sh")}, false)
	s.isolated = true // the 5 µs clock
	ctx := openHarnessFor(t, s, 3*time.Hour)
	// the copy probe before and after everything; the ratios are to the faster (a fresh browser's first
	// probes run slow: SwiftShader compiling, the GPU process starting)
	eval[float64](t, ctx, jsCopyProbe)
	copyBefore := eval[float64](t, ctx, jsCopyProbe)

	start := time.Now()
	if r := eval[loadResult](t, ctx, `load({backend: 'webgpu', tuneBudgetMs: 3600e3})`); !r.OK {
		t.Fatalf("load on WebGPU: %s: %s", r.Type, r.Message)
	}
	t.Logf("loaded in %.1f s, the autotune timing every candidate", time.Since(start).Seconds())
	// the figures, printed at the end with their ratio to the copy probe (gbps 0: no ratio)
	type figure struct {
		line string
		gbps float64
	}
	var figures []figure
	u := benchAnswer(t, ctx, "Hi", 6)
	t.Logf("autotune: %s, %.0f ms; skipped %v", u.Kernels, u.TuneMS, u.TuneSkipped)
	for _, label := range slices.Sorted(maps.Keys(u.Tune)) {
		c := u.Tune[label]
		figures = append(figures, figure{fmt.Sprintf("candidate %-22s %10.0f µs", label, c.US), c.gbps()})
	}
	figures = append(figures, figure{fmt.Sprintf("decode, autotuned          %8.3f tok/s", u.DecodeTPS), u.DecodeTPS * u.WeightBytes / 1e9})

	// decode (a short prompt, 6 tokens) with each matvec variant; prefill of a long prompt with each matmul
	for _, v := range webgpu.MatvecVariants() {
		if benchReload(t, ctx, webgpu.Kernels{Matvec: v}) {
			u := benchAnswer(t, ctx, "Hi", 6)
			figures = append(figures, figure{fmt.Sprintf("decode, matvec %-11s %8.3f tok/s", v, u.DecodeTPS), u.DecodeTPS * u.WeightBytes / 1e9})
		}
	}
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 12) // ~130 tokens: 4 prefill chunks of 32
	for _, v := range webgpu.MatmulVariants() {
		if benchReload(t, ctx, webgpu.Kernels{Matmul: v}) {
			u := benchAnswer(t, ctx, long, 1)
			figures = append(figures, figure{fmt.Sprintf("prefill, matmul %-10s %8.2f tok/s (%d tokens in %.1f s)", v,
				float64(u.Prefilled)/u.FirstTokenS, u.Prefilled, u.FirstTokenS), 0})
		}
	}
	copyAfter := eval[float64](t, ctx, jsCopyProbe)
	limit := max(copyBefore, copyAfter)
	t.Logf("copy probe (JavaScript, 32 MiB): %.2f GB/s at the start, %.2f at the end; ratios to %.2f", copyBefore, copyAfter, limit)
	for _, f := range figures {
		if f.gbps > 0 {
			f.line += fmt.Sprintf("  %7.3f GB/s of weights  %.3f of copy", f.gbps, f.gbps/limit)
		}
		t.Log(f.line)
	}
}

type benchUsage struct {
	Prefilled   int                      `json:"prefilled_tokens"`
	FirstTokenS float64                  `json:"first_token_seconds"`
	DecodeTPS   float64                  `json:"decode_tokens_per_second"`
	WeightBytes float64                  `json:"weight_bytes_per_token"`
	Kernels     string                   `json:"kernels"`
	TuneMS      float64                  `json:"tune_ms"`
	TuneSkipped []string                 `json:"tune_skipped"`
	Tune        map[string]tuneCandidate `json:"tune"`
}

// benchAnswer answers prompt greedily with a short system prompt (the official one would be a long
// prefill) in a new conversation, and returns the answer's usage.
func benchAnswer(t *testing.T, ctx context.Context, prompt string, tokens int) benchUsage {
	t.Helper()
	return eval[benchUsage](t, ctx, fmt.Sprintf(`engine.resetChat().then(() => chat([{role: 'system', content: 'You are a helpful assistant.'},
		{role: 'user', content: %s}], {temperature: 0, max_tokens: %d})).then((cs) => cs.at(-1).usage)`,
		jsString(prompt), tokens))
}

// benchReload reloads the engine with k forced (the rest as the autotune chose) and says whether it runs
// on this adapter.
func benchReload(t *testing.T, ctx context.Context, k webgpu.Kernels) bool {
	t.Helper()
	kernels, _ := json.Marshal(k)
	r := eval[loadResult](t, ctx, `reload({kernels: `+string(kernels)+`, tuneBudgetMs: 0})`)
	if !r.OK {
		if r.Type != "invalid-request" {
			t.Fatalf("reload with %s: %s: %s", kernels, r.Type, r.Message)
		}
		t.Logf("VARIANT NOT RUN %s: %s", kernels, r.Message)
	}
	return r.OK
}
