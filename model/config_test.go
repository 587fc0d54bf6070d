package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// realConfig is config.json as the real checkpoint has it (MODEL.md).
const realConfig = `{
  "architectures": ["InternLM3ForCausalLM"], "model_type": "internlm3",
  "hidden_size": 4096, "intermediate_size": 10240, "num_hidden_layers": 48,
  "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128,
  "vocab_size": 128512, "max_position_embeddings": 32768,
  "rope_theta": 50000000, "rope_scaling": {"factor": 6.0, "rope_type": "dynamic"},
  "rms_norm_eps": 1e-05, "bias": false, "qkv_bias": false, "tie_word_embeddings": false,
  "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "torch_dtype": "bfloat16"
}`

func TestParseConfigReal(t *testing.T) {
	c, err := ParseConfig("config.json", []byte(realConfig))
	require.NoError(t, err)
	require.Equal(t, 4096, c.HiddenSize)
	require.Equal(t, 10240, c.IntermediateSize)
	require.Equal(t, 48, c.NumHiddenLayers)
	require.Equal(t, 32, c.NumAttentionHeads)
	require.Equal(t, 2, c.NumKeyValueHeads)
	require.Equal(t, 128, c.HeadDim)
	require.Equal(t, 128512, c.VocabSize)
	require.Equal(t, 32768, c.MaxPositionEmbeddings)
	require.Equal(t, 5e7, c.RopeTheta)
	require.Equal(t, &RopeScaling{Factor: 6, RopeType: "dynamic"}, c.RopeScaling)
	require.Equal(t, 1e-5, c.RMSNormEps)
	require.Equal(t, 256, c.KVDim())
	require.Equal(t, 4096, c.QDim())
	require.Equal(t, 196608, c.ContextLimit())
}

func TestParseConfigLegacyRopeType(t *testing.T) {
	c, err := ParseConfig("config.json", []byte(strings.Replace(realConfig, `"rope_type"`, `"type"`, 1)))
	require.NoError(t, err)
	require.Equal(t, "dynamic", c.RopeScaling.RopeType)
}

func TestParseConfigHeadDimDefault(t *testing.T) {
	c, err := ParseConfig("config.json", []byte(strings.Replace(realConfig, `"head_dim": 128,`, ``, 1)))
	require.NoError(t, err)
	require.Equal(t, 128, c.HeadDim)
}

func TestParseConfigErrors(t *testing.T) {
	edit := func(field string, value any) string {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(realConfig), &m))
		if value == nil {
			delete(m, field)
		} else {
			m[field] = value
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct {
		name, data, field string
	}{
		{"not json", `{"hidden_size": 4096,`, "invalid JSON"},
		{"wrong architecture", edit("architectures", []string{"LlamaForCausalLM"}), "architectures"},
		{"wrong model type", edit("model_type", "llama"), "model_type"},
		{"missing hidden_size", edit("hidden_size", nil), "hidden_size"},
		{"missing rope_theta", edit("rope_theta", nil), "rope_theta"},
		{"string hidden_size", edit("hidden_size", "4096"), "hidden_size"},
		{"zero layers", edit("num_hidden_layers", 0), "num_hidden_layers"},
		{"negative heads", edit("num_attention_heads", -1), "num_attention_heads"},
		{"kv heads do not divide", edit("num_key_value_heads", 3), "num_key_value_heads"},
		{"odd head_dim", edit("head_dim", 127), "head_dim"},
		{"bad eps", edit("rms_norm_eps", 0), "rms_norm_eps"},
		{"bad act", edit("hidden_act", "gelu"), "hidden_act"},
		{"tied", edit("tie_word_embeddings", true), "tie_word_embeddings"},
		{"eos outside vocab", edit("eos_token_id", 200000), "eos_token_id"},
		{"unknown rope type", edit("rope_scaling", map[string]any{"factor": 2, "rope_type": "yarn"}), "rope_scaling"},
		{"rope factor", edit("rope_scaling", map[string]any{"factor": 0.5, "rope_type": "dynamic"}), "rope_scaling.factor"},
		{"rope scaling not object", edit("rope_scaling", 3), "rope_scaling"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("ckpt/config.json", []byte(tc.data))
			require.Error(t, err)
			require.Contains(t, err.Error(), "ckpt/config.json")
			require.Contains(t, err.Error(), tc.field)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "config.json"))
	require.ErrorContains(t, err, "config.json")
}

func TestLoadStopIDs(t *testing.T) {
	c, err := ParseConfig("config.json", []byte(realConfig))
	require.NoError(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "generation_config.json")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o644)) }

	write(`{"eos_token_id": [2, 128131]}`)
	ids, err := loadStopIDs(path, c, &ChatFormat{imEnd: 128131})
	require.NoError(t, err)
	require.Equal(t, []int{2, 128131}, ids)

	write(`{"eos_token_id": 2}`)
	ids, err = loadStopIDs(path, c, &ChatFormat{imEnd: 128131})
	require.NoError(t, err)
	require.Equal(t, []int{2}, ids)

	for _, bad := range []string{`{"eos_token_id": "x"}`, `{"eos_token_id": []}`, `{}`, `{"eos_token_id": [999999]}`, `{`} {
		write(bad)
		_, err = loadStopIDs(path, c, &ChatFormat{imEnd: 128131})
		require.ErrorContains(t, err, "generation_config.json", bad)
	}

	require.NoError(t, os.Remove(path))
	ids, err = loadStopIDs(path, c, &ChatFormat{imEnd: 128131})
	require.NoError(t, err)
	require.Equal(t, []int{2, 128131}, ids, "without generation_config.json, stop on eos and <|im_end|>")
}
