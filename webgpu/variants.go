package webgpu

import (
	"fmt"
	"math"
	"slices"

	"github.com/oliverbestmann/webgpu/wgpu"
)

// Kernels names the variant each kernel family runs: how a decoded token's matvecs and attention are
// computed, never what (every variant is tested against the same CPU twin). Options.Kernels forces
// variants; the ones left empty are chosen by the autotune (autotune.go), which times the admissible
// variants on the device with the model's shapes.
type Kernels struct {
	Matvec    string `json:"matvec"`    // one of MatvecVariants
	Attention string `json:"attention"` // one of AttentionVariants
	Matmul    string `json:"matmul"`    // one of MatmulVariants: the prefill's projections
}

func (k Kernels) String() string {
	return fmt.Sprintf("matvec %s, attention %s, matmul %s", k.Matvec, k.Attention, k.Matmul)
}

// complete says whether every family's variant is named.
func (k Kernels) complete() bool { return k.Matvec != "" && k.Attention != "" && k.Matmul != "" }

// matmulVariant is one way to compute matmul.wgsl's q4 product for a prefill pass; f32 matrices (parity
// only) always run the tiled matmul_f32.
type matmulVariant struct {
	name         string
	file         string // the module: matmul.wgsl, with a variant's file compiled after it
	suffix       string // of the q4 entry point matmul_q4<suffix>
	needs        string // "subgroups" or ""
	rows, tokens int    // the tile a workgroup computes
}

var matmulVariants = []matmulVariant{
	{name: "tiled", file: "matmul", rows: tileRows, tokens: tileTokens},
	{name: "subgroup", file: "matmul+matmul_subgroup", suffix: "_subgroup", needs: "subgroups", rows: 4, tokens: 8},
}

// MatmulVariants are the names Kernels.Matmul takes, the default first.
func MatmulVariants() []string { return variantNames(matmulVariants) }

func matmulVariantNamed(name string) (matmulVariant, error) {
	return variantNamed("matmul", matmulVariants, name)
}

// variant is what variantNames and variantNamed need of a family's variants.
type variant interface{ variantName() string }

func (v matvecVariant) variantName() string { return v.name }
func (v matmulVariant) variantName() string { return v.name }

// variantNames are the names of vs, in order.
func variantNames[V variant](vs []V) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.variantName())
	}
	return out
}

// variantNamed is the variant of vs called name; empty: the first (the family's default).
func variantNamed[V variant](family string, vs []V, name string) (V, error) {
	if name == "" {
		return vs[0], nil
	}
	i := slices.IndexFunc(vs, func(v V) bool { return v.variantName() == name })
	if i < 0 {
		var none V
		return none, fmt.Errorf("webgpu: %s variant %q: not one of %v", family, name, variantNames(vs))
	}
	return vs[i], nil
}

// matvecVariant is one way to compute matvec.wgsl's q4 product. The binding cannot set override constants,
// so a workgroup size is an entry point of its own (see matvec.wgsl).
type matvecVariant struct {
	name   string
	file   string // the module: matvec.wgsl, with a variant's file compiled after it
	suffix string // of the q4 entry point matvec_q4<suffix>; f32 matrices run matvec_f32<f32> (parity only)
	f32    string
	needs  string // what the device must offer: "subgroups", "packed_4x8_integer_dot_product" (found by compiling), or ""
	// q8: x is quantized to int8 first (quantize_q8). That moves log-probs by ~1e-2, beyond the 2e-3 the
	// engine keeps to the CPU reference, so the autotune never picks it: only Options.Kernels does.
	q8 bool
}

var matvecVariants = []matvecVariant{
	{name: "wg64", file: "matvec"},
	{name: "wg128", file: "matvec", suffix: "_128", f32: "_128"},
	{name: "wg256", file: "matvec", suffix: "_256", f32: "_256"},
	{name: "subgroup64", file: "matvec+matvec_subgroup", suffix: "_subgroup", needs: "subgroups"},
	{name: "subgroup256", file: "matvec+matvec_subgroup", suffix: "_subgroup_256", f32: "_256", needs: "subgroups"},
	{name: "q8", file: "matvec+matvec_q8", suffix: "_q8", needs: "packed_4x8_integer_dot_product", q8: true},
	{name: "q8wg256", file: "matvec+matvec_q8", suffix: "_q8_256", f32: "_256", needs: "packed_4x8_integer_dot_product", q8: true},
}

// MatvecVariants are the names Kernels.Matvec takes, the default first.
func MatvecVariants() []string { return variantNames(matvecVariants) }

// AttentionVariants are the names Kernels.Attention takes, the default first: one workgroup per head
// (attention.wgsl), or the keys split into 8, 32 or 128 ranges per head (attention_split.wgsl).
func AttentionVariants() []string { return []string{"single", "split8", "split32", "split128"} }

// attentionSplits is how many KV splits an attention variant makes; 0 for "single".
func attentionSplits(name string) int {
	var n int
	fmt.Sscanf(name, "split%d", &n)
	return n
}

// maxSplits is the most KV splits a variant makes, for sizing the partials.
const maxSplits = 128

func matvecVariantNamed(name string) (matvecVariant, error) {
	return variantNamed("matvec", matvecVariants, name)
}

// VariantError is why a forced kernel variant cannot run: an unknown name, or one the device cannot
// run (a feature it does not offer, a module it does not compile).
type VariantError struct{ Err error }

func (e *VariantError) Error() string { return e.Err.Error() }
func (e *VariantError) Unwrap() error { return e.Err }

// checkKernels says whether k names known variants that the device can run (else a *VariantError).
func (d *Device) checkKernels(k Kernels) error {
	if err := d.checkVariants(k); err != nil {
		return &VariantError{err}
	}
	return nil
}

func (d *Device) checkVariants(k Kernels) error {
	v, err := matvecVariantNamed(k.Matvec)
	if err != nil {
		return err
	}
	if k.Attention != "" && !slices.Contains(AttentionVariants(), k.Attention) {
		return fmt.Errorf("webgpu: attention variant %q: not one of %v", k.Attention, AttentionVariants())
	}
	if v.needs == "subgroups" && !d.Subgroups {
		return fmt.Errorf("webgpu: matvec variant %s needs subgroups, which %s does not offer", v.name, d.Adapter)
	}
	if _, err := d.kernel(v.file, "matvec_q4"+v.suffix); err != nil {
		return fmt.Errorf("webgpu: matvec variant %s on %s: %w", v.name, d.Adapter, err)
	}
	mm, err := matmulVariantNamed(k.Matmul)
	if err != nil {
		return err
	}
	if mm.needs == "subgroups" && !d.Subgroups {
		return fmt.Errorf("webgpu: matmul variant %s needs subgroups, which %s does not offer", mm.name, d.Adapter)
	}
	if _, err := d.kernel(mm.file, "matmul_q4"+mm.suffix); err != nil {
		return fmt.Errorf("webgpu: matmul variant %s on %s: %w", mm.name, d.Adapter, err)
	}
	return nil
}

// quantizeQ8 records the quantization of x's last row (RMS-normalised with f.norm first, if set) into fresh
// buffers, and returns its dispatch with the buffers the matvec reads instead of x.
func (d *Device) quantizeQ8(file string, cols int, step, x *wgpu.Buffer, f fusion) (dispatch, [2]*wgpu.Buffer, error) {
	var qx [2]*wgpu.Buffer
	if cols%32 != 0 {
		return dispatch{}, qx, fmt.Errorf("quantize_q8: %d columns are not groups of 32", cols)
	}
	xq, err := d.buffer("x q8", uint64(cols), storage)
	if err != nil {
		return dispatch{}, qx, err
	}
	xs, err := d.buffer("x q8 scales", uint64(8*cols/32), storage)
	if err != nil {
		return dispatch{}, qx, err
	}
	absent, err := d.absentBuffer()
	if err != nil {
		return dispatch{}, qx, err
	}
	flags, norm := 0, f.norm
	if norm != nil {
		flags = 2 // NORM
	} else {
		norm = absent
	}
	c, err := d.op(file, "quantize_q8", fixed(1), []any{0, cols, 0, flags, 0, float32(f.eps), 0},
		step, x, nil, nil, nil, nil, norm, xq, xs)
	return c, [2]*wgpu.Buffer{xq, xs}, err
}

// attentionSplit is attention (kernels.go) as split-KV decoding: splits workgroups per head each take a
// range of the keys (attention_split), and attention_merge combines them into out. The partials
// [heads, splits, 2+headDim] live in scores, which must hold them (partialsFloats).
func (d *Device) attentionSplit(step, qkv, k, v, scores, out *wgpu.Buffer, heads, kvHeads, headDim, qStride, splits int, kvF16 bool) ([]dispatch, error) {
	if err := checkAttention(heads, kvHeads, headDim); err != nil {
		return nil, err
	}
	if splits < 1 || splits > maxSplits {
		return nil, fmt.Errorf("attention: %d KV splits (1 … %d)", splits, maxSplits)
	}
	scale := float32(1 / math.Sqrt(float64(headDim)))
	params := []any{heads, kvHeads, headDim, qStride, 0, scale, flag(kvF16), splits}
	grid := func(int) (uint32, uint32) { return uint32(splits), uint32(heads) }
	split, err := d.op("attention+attention_split", "attention_split", grid, params, step, qkv, k, v, nil, scores)
	if err != nil {
		return nil, err
	}
	merge, err := d.op("attention+attention_split", "attention_merge", fixed(uint32(heads)), params, nil, nil, nil, nil, out, scores)
	if err != nil {
		return nil, err
	}
	return []dispatch{split, merge}, nil
}

// partialsFloats is how many floats attentionSplit's partials take in scores at most.
func partialsFloats(heads, headDim int) int { return heads * maxSplits * (2 + headDim) }
