package model

import "fmt"

// Linear is a weight matrix in PyTorch layout [Out, In], row-major, with an optional bias [Out].
type Linear struct {
	Out, In int
	W       []float32    // [Out*In] f32, from an HF checkpoint; nil when loaded from a converted dir
	Bias    []float32    // [Out] or nil
	Q       *QuantMatrix // [Out, In] as stored in a converted dir (q4, q8, f16 or f32); nil from HF
}

// Dense returns the weights as f32 [Out*In], dequantizing the stored form when that is all there is.
func (l Linear) Dense() []float32 {
	if l.W != nil {
		return l.W
	}
	w := make([]float32, l.Out*l.In)
	for r := 0; r < l.Out; r++ {
		l.Q.DequantRow(r, w[r*l.In:(r+1)*l.In])
	}
	return w
}

// Layer holds one decoder block's weights. Shapes use the config's names:
// D = hidden_size, Q = heads*head_dim, KV = kv_heads*head_dim, F = intermediate_size.
type Layer struct {
	InputNorm []float32 // [D]
	Q         Linear    // [Q, D]
	K         Linear    // [KV, D]
	V         Linear    // [KV, D]
	O         Linear    // [D, Q]
	PostNorm  []float32 // [D]
	Gate      Linear    // [F, D]
	Up        Linear    // [F, D]
	Down      Linear    // [D, F]
}

// Weights is the whole decoder.
type Weights struct {
	Embed  Linear // [vocab, D]; row t is token t's embedding
	Layers []Layer
	Norm   []float32 // [D]
	LMHead Linear    // [vocab, D]
}

// TensorSource yields a named tensor as f32 with its shape; implemented by HF checkpoints and converted dirs.
type TensorSource interface {
	Float32(name string, shape []int) ([]float32, error)
}

// weightTable maps HF tensor names to the fields of Weights: the one place that knows checkpoint names.
func weightTable(c *Config, w *Weights) []weightEntry {
	D, Q, KV, F, V := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize, c.VocabSize
	t := []weightEntry{
		{"model.embed_tokens.weight", lin(&w.Embed, V, D)},
		{"model.norm.weight", vec(&w.Norm, D)},
		{"lm_head.weight", lin(&w.LMHead, V, D)},
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		t = append(t,
			weightEntry{p + "input_layernorm.weight", vec(&l.InputNorm, D)},
			weightEntry{p + "self_attn.q_proj.weight", lin(&l.Q, Q, D)},
			weightEntry{p + "self_attn.k_proj.weight", lin(&l.K, KV, D)},
			weightEntry{p + "self_attn.v_proj.weight", lin(&l.V, KV, D)},
			weightEntry{p + "self_attn.o_proj.weight", lin(&l.O, D, Q)},
			weightEntry{p + "post_attention_layernorm.weight", vec(&l.PostNorm, D)},
			weightEntry{p + "mlp.gate_proj.weight", lin(&l.Gate, F, D)},
			weightEntry{p + "mlp.up_proj.weight", lin(&l.Up, F, D)},
			weightEntry{p + "mlp.down_proj.weight", lin(&l.Down, D, F)},
		)
		if c.QKVBias {
			t = append(t,
				weightEntry{p + "self_attn.q_proj.bias", vec(&l.Q.Bias, Q)},
				weightEntry{p + "self_attn.k_proj.bias", vec(&l.K.Bias, KV)},
				weightEntry{p + "self_attn.v_proj.bias", vec(&l.V.Bias, KV)},
			)
		}
		if c.Bias {
			t = append(t, weightEntry{p + "self_attn.o_proj.bias", vec(&l.O.Bias, D)})
		}
	}
	return t
}

type weightEntry struct {
	name   string
	target weightTarget
}

type weightTarget struct {
	shape []int
	dst   *[]float32
	lin   *Linear
}

func lin(l *Linear, out, in int) weightTarget {
	return weightTarget{shape: []int{out, in}, dst: &l.W, lin: l}
}

func vec(dst *[]float32, n int) weightTarget { return weightTarget{shape: []int{n}, dst: dst} }

// LoadWeights reads every tensor the config calls for from src.
func LoadWeights(c *Config, src TensorSource) (*Weights, error) {
	w := &Weights{Layers: make([]Layer, c.NumHiddenLayers)}
	for _, e := range weightTable(c, w) {
		data, err := src.Float32(e.name, e.target.shape)
		if err != nil {
			return nil, err
		}
		*e.target.dst = data
		if l := e.target.lin; l != nil {
			l.Out, l.In = e.target.shape[0], e.target.shape[1]
		}
	}
	return w, nil
}
