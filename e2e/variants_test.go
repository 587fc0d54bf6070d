package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ilmweb/ilmweb/webgpu"
)

// Every WebGPU kernel variant against its CPU twin in the browser: the wasm engine on WebGPU (SwiftShader
// in headless Chromium) with the variants forced through the public API's kernels option must give the
// greedy answer of the same page's CPU engine (model.CPU in wasm). Loads combine one variant of each
// family, reloaded in one worker (engine.reload); a combination the adapter cannot run is tried again one variant at a time, and each variant
// that cannot run is named (VARIANT NOT RUN), never skipped silently. The q8 matvecs change the numerics
// on purpose (their error is bounded in webgpu's TestMatvecVariants and TestEngineVariants): here they
// must run and answer.
func TestWasmKernelVariants(t *testing.T) {
	engineReady(t)
	s := newTestServer(t, &fakeModel{dir: tinyModel(t)}, false)
	ctx := openHarness(t, s)
	adapter := eval[string](t, ctx, `navigator.gpu ? navigator.gpu.requestAdapter().then((a) => a ?
		JSON.stringify({features: [...a.features].filter((f) => f === 'subgroups'), subgroupSizes: [a.info?.subgroupMinSize, a.info?.subgroupMaxSize],
			packedDot: navigator.gpu.wgslLanguageFeatures.has('packed_4x8_integer_dot_product')}) : 'no adapter') : 'no WebGPU'`)
	t.Logf("adapter: %s", adapter)

	if r := eval[loadResult](t, ctx, `load({backend: 'cpu'})`); !r.OK {
		t.Fatalf("load on the CPU path: %s: %s", r.Type, r.Message)
	}
	want := greedyAnswer(t, ctx).Text
	t.Logf("the CPU engine's answer: %q", want)

	families := [][]string{webgpu.MatvecVariants(), webgpu.AttentionVariants(), webgpu.MatmulVariants()}
	var defaults webgpu.Kernels
	for f, names := range families {
		defaults = withVariant(defaults, f, names[0])
	}
	ran, notRun := map[string]bool{}, map[string]bool{} // by label, "matvec wg64"

	// check loads k and compares its answer; a load the adapter refuses is tried again one variant at a
	// time (with the other families' defaults), unless k is one already
	var check func(k webgpu.Kernels)
	check = func(k webgpu.Kernels) {
		a, failed := forcedAnswer(t, ctx, k)
		if failed != "" {
			var alone []webgpu.Kernels
			for f, name := range variantsOf(k) {
				if name != variantsOf(defaults)[f] {
					alone = append(alone, withVariant(defaults, f, name))
				}
			}
			if len(alone) > 1 {
				for _, one := range alone {
					check(one)
				}
				return
			}
			for f, name := range variantsOf(k) {
				if name != variantsOf(defaults)[f] || k == defaults {
					notRun[familyNames[f]+" "+name] = true
					t.Logf("VARIANT NOT RUN %s %s: %s", familyNames[f], name, failed)
				}
			}
			return
		}
		if !strings.Contains(a.Kernels, k.String()+" (forced") {
			t.Errorf("forced %v, the engine reports kernels %q", k, a.Kernels)
		}
		for f, name := range variantsOf(k) {
			ran[familyNames[f]+" "+name] = true
		}
		exact := !strings.HasPrefix(k.Matvec, "q8")
		switch {
		case exact && a.Text != want:
			t.Errorf("kernels %v: the greedy answer differs from the CPU engine's:\n got %q\nwant %q", k, a.Text, want)
		case !exact && a.Completion == 0:
			t.Errorf("kernels %v: no tokens", k)
		default:
			t.Logf("kernels %v: %d tokens, the CPU engine's answer: %v", k, a.Completion, a.Text == want)
		}
	}
	// load i forces variant i of each family (a family's default once it has no more)
	for i := 0; i < max(len(families[0]), len(families[1]), len(families[2])); i++ {
		k := defaults
		for f, names := range families {
			if i < len(names) {
				k = withVariant(k, f, names[i])
			}
		}
		check(k)
	}
	var missed []string
	for f, names := range families {
		for _, name := range names {
			if label := familyNames[f] + " " + name; !ran[label] && !notRun[label] {
				missed = append(missed, label)
			}
		}
	}
	t.Logf("variants run on this adapter: %v; not run: %v", slices.Sorted(maps.Keys(ran)), slices.Sorted(maps.Keys(notRun)))
	if len(missed) > 0 {
		t.Errorf("variants neither run nor reported: %v", missed)
	}
	// a name the engine does not know fails the load with one line naming it
	r := eval[loadResult](t, ctx, `reload({kernels: {matvec: 'fastest'}})`)
	if r.OK || r.Type != "invalid-request" || !strings.Contains(r.Message, `matvec variant "fastest"`) {
		t.Errorf("an unknown variant: %+v", r)
	}
	r = eval[loadResult](t, ctx, `reload({kernels: {matvecs: 'wg64'}})`)
	if r.OK || r.Type != "invalid-request" || !strings.Contains(r.Message, `"matvecs"`) {
		t.Errorf("an unknown kernels field: %+v", r)
	}
	r = eval[loadResult](t, ctx, `reload({model: '/other/'})`)
	if r.OK || r.Type != "invalid-request" || !strings.Contains(r.Message, "unknown option model") {
		t.Errorf("reload with an option it does not take: %+v", r)
	}
	// after a failed reload the engine holds no model until the next one succeeds
	if r := eval[loadResult](t, ctx, `reload({kernels: {}})`); !r.OK {
		t.Fatalf("reload after a failed one: %s: %s", r.Type, r.Message)
	}
	if got := greedyAnswer(t, ctx); got.Text != want {
		t.Errorf("the autotuned engine after the reloads answers %q, want %q", got.Text, want)
	}
	r = eval[loadResult](t, ctx, `load({backend: 'webgpu', kernels: {matmul: 'huge'}})`) // createEngine's option
	if r.OK || r.Type != "invalid-request" || !strings.Contains(r.Message, `matmul variant "huge"`) {
		t.Errorf("createEngine with an unknown variant: %+v", r)
	}
}

var familyNames = [...]string{"matvec", "attention", "matmul"}

// variantsOf is k's variants in familyNames' order.
func variantsOf(k webgpu.Kernels) [3]string { return [3]string{k.Matvec, k.Attention, k.Matmul} }

// withVariant is k with family f's variant set to name.
func withVariant(k webgpu.Kernels, f int, name string) webgpu.Kernels {
	switch f {
	case 0:
		k.Matvec = name
	case 1:
		k.Attention = name
	default:
		k.Matmul = name
	}
	return k
}

type answer struct {
	Text       string `json:"text"`
	Completion int    `json:"completion"`
	Kernels    string `json:"kernels"`
}

// greedyAnswer is the loaded engine's greedy answer of 12 tokens to prompt.
func greedyAnswer(t *testing.T, ctx context.Context) answer {
	t.Helper()
	return eval[answer](t, ctx, `chat([{role: 'user', content: `+jsString(prompt)+`}], {temperature: 0, max_tokens: 12}).then((cs) => ({
		text: cs.map((c) => c.choices[0]?.delta?.content ?? '').join(''),
		completion: cs[cs.length - 1].usage.completion_tokens, kernels: cs[cs.length - 1].usage.kernels ?? ''}))`)
}

// forcedAnswer loads the engine on WebGPU with kernels k and answers greedily; failed is why the load
// failed when the engine refused k as a variant the adapter cannot run (any other failure ends the test).
func forcedAnswer(t *testing.T, ctx context.Context, k webgpu.Kernels) (a answer, failed string) {
	t.Helper()
	kernels, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	// in the worker of the CPU engine's load: the GPU device and the kernels it compiled stay from one to the next
	r := eval[loadResult](t, ctx, `reload({backend: 'webgpu', kernels: `+string(kernels)+`})`)
	switch {
	case r.OK:
		return greedyAnswer(t, ctx), ""
	case r.Type == "invalid-request":
		return answer{}, r.Message
	case r.Type == "no-webgpu" && !mustRun():
		t.Skipf("this Chromium offers no WebGPU: %s", r.Message)
	}
	t.Fatalf("load on WebGPU with kernels %v: %s: %s", k, r.Type, r.Message)
	return
}
