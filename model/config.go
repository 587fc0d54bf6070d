package model

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/ilmweb/ilmweb/internal/safefile"
)

// Config holds the fields of an InternLM3 HF config.json that the engine honours (see MODEL.md).
type Config struct {
	Architectures         []string     `json:"architectures"`
	ModelType             string       `json:"model_type"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumHiddenLayers       int          `json:"num_hidden_layers"`
	NumAttentionHeads     int          `json:"num_attention_heads"`
	NumKeyValueHeads      int          `json:"num_key_value_heads"`
	HeadDim               int          `json:"head_dim"`
	VocabSize             int          `json:"vocab_size"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	RopeTheta             float64      `json:"rope_theta"`
	RopeScaling           *RopeScaling `json:"rope_scaling"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	Bias                  bool         `json:"bias"`
	QKVBias               bool         `json:"qkv_bias"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	HiddenAct             string       `json:"hidden_act"`
	BOSTokenID            int          `json:"bos_token_id"`
	EOSTokenID            int          `json:"eos_token_id"`
	PadTokenID            int          `json:"pad_token_id"`
}

// RopeScaling is config.json's rope_scaling; old configs spell rope_type as "type".
type RopeScaling struct {
	Factor   float64 `json:"factor"`
	RopeType string  `json:"rope_type"`
	Type     string  `json:"type"`
}

// LoadConfig reads and validates an HF config.json.
func LoadConfig(path string) (*Config, error) {
	data, err := safefile.ReadFile(path, MaxJSONFileBytes)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates config.json contents; name is used in errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	// Decode into raw fields first so a missing field is told apart from a zero value.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", name, err)
	}
	required := []string{"architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
		"num_attention_heads", "num_key_value_heads", "vocab_size", "max_position_embeddings", "rope_theta",
		"rms_norm_eps", "hidden_act"}
	for _, f := range required {
		if _, ok := raw[f]; !ok {
			return nil, fmt.Errorf("%s: missing field %q", name, f)
		}
	}
	c := &Config{BOSTokenID: 1, EOSTokenID: 2, PadTokenID: 2}
	for field, v := range raw {
		if err := decodeConfigField(c, field, v); err != nil {
			return nil, fmt.Errorf("%s: field %q: %w", name, field, err)
		}
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// decodeConfigField decodes one known field into c; unknown fields are ignored.
func decodeConfigField(c *Config, field string, v json.RawMessage) error {
	var dst any
	switch field {
	case "architectures":
		dst = &c.Architectures
	case "model_type":
		dst = &c.ModelType
	case "hidden_size":
		dst = &c.HiddenSize
	case "intermediate_size":
		dst = &c.IntermediateSize
	case "num_hidden_layers":
		dst = &c.NumHiddenLayers
	case "num_attention_heads":
		dst = &c.NumAttentionHeads
	case "num_key_value_heads":
		dst = &c.NumKeyValueHeads
	case "head_dim":
		dst = &c.HeadDim
	case "vocab_size":
		dst = &c.VocabSize
	case "max_position_embeddings":
		dst = &c.MaxPositionEmbeddings
	case "rope_theta":
		dst = &c.RopeTheta
	case "rope_scaling":
		dst = &c.RopeScaling
	case "rms_norm_eps":
		dst = &c.RMSNormEps
	case "bias":
		dst = &c.Bias
	case "qkv_bias":
		dst = &c.QKVBias
	case "tie_word_embeddings":
		dst = &c.TieWordEmbeddings
	case "hidden_act":
		dst = &c.HiddenAct
	case "bos_token_id":
		dst = &c.BOSTokenID
	case "eos_token_id":
		dst = &c.EOSTokenID
	case "pad_token_id":
		dst = &c.PadTokenID
	default:
		return nil
	}
	if string(v) == "null" && field == "rope_scaling" {
		c.RopeScaling = nil
		return nil
	}
	return json.Unmarshal(v, dst)
}

func (c *Config) validate() error {
	if len(c.Architectures) != 1 || c.Architectures[0] != "InternLM3ForCausalLM" {
		return fmt.Errorf("field \"architectures\": want [\"InternLM3ForCausalLM\"], got %q", c.Architectures)
	}
	if c.ModelType != "internlm3" {
		return fmt.Errorf("field \"model_type\": want \"internlm3\", got %q", c.ModelType)
	}
	positive := []struct {
		name string
		v    int
	}{
		{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads}, {"head_dim", c.HeadDim},
		{"vocab_size", c.VocabSize}, {"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("field %q: must be positive, got %d", p.name, p.v)
		}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("field \"num_key_value_heads\": %d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("field \"head_dim\": must be even for RoPE, got %d", c.HeadDim)
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return fmt.Errorf("field \"rope_theta\": must be a positive number, got %v", c.RopeTheta)
	}
	if !(c.RMSNormEps > 0) || c.RMSNormEps >= 1 {
		return fmt.Errorf("field \"rms_norm_eps\": must be in (0, 1), got %v", c.RMSNormEps)
	}
	if c.HiddenAct != "silu" {
		return fmt.Errorf("field \"hidden_act\": only \"silu\" is supported, got %q", c.HiddenAct)
	}
	if c.TieWordEmbeddings {
		return fmt.Errorf("field \"tie_word_embeddings\": tied embeddings are not supported")
	}
	for _, id := range []struct {
		name string
		v    int
	}{{"bos_token_id", c.BOSTokenID}, {"eos_token_id", c.EOSTokenID}, {"pad_token_id", c.PadTokenID}} {
		if id.v < 0 || id.v >= c.VocabSize {
			return fmt.Errorf("field %q: %d outside vocab of %d", id.name, id.v, c.VocabSize)
		}
	}
	if rs := c.RopeScaling; rs != nil {
		kind := rs.RopeType
		if kind == "" {
			kind = rs.Type
		}
		switch kind {
		case "dynamic":
		case "default", "":
			c.RopeScaling = nil
			return nil
		default:
			return fmt.Errorf("field \"rope_scaling\": unsupported rope_type %q (want \"dynamic\")", kind)
		}
		rs.RopeType, rs.Type = kind, ""
		if !(rs.Factor >= 1 && rs.Factor <= 1024) {
			return fmt.Errorf("field \"rope_scaling.factor\": must be in [1, 1024], got %v", rs.Factor)
		}
	}
	return nil
}

// KVDim is the width of one token's keys (or values): kv heads × head dim.
func (c *Config) KVDim() int { return c.NumKeyValueHeads * c.HeadDim }

// QDim is the width of one token's queries: heads × head dim.
func (c *Config) QDim() int { return c.NumAttentionHeads * c.HeadDim }

// ContextLimit is the longest context the model is meant to see: max_position_embeddings, stretched by the
// rope_scaling factor when dynamic NTK scaling is on (InternLM3: 32768 × 6).
func (c *Config) ContextLimit() int {
	if c.RopeScaling != nil {
		return int(float64(c.MaxPositionEmbeddings) * c.RopeScaling.Factor)
	}
	return c.MaxPositionEmbeddings
}
