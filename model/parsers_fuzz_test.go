package model

import (
	"os"
	"strings"
	"testing"
)

// FuzzNewTokenizer feeds arbitrary tokenizer.model and tokenizer_config.json bytes to the tokenizer's
// parsers: they must return an error or a tokenizer that encodes and decodes without panicking, and an
// error is one line naming the file.
func FuzzNewTokenizer(f *testing.F) {
	model, err := os.ReadFile("../testdata/tokenizer/tiny.model")
	if err != nil {
		f.Fatal(err)
	}
	config, err := os.ReadFile("../testdata/tokenizer/tokenizer_config.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(model, config)
	f.Add(model[:len(model)/2], config)
	f.Add(model, []byte(`{"added_tokens_decoder": {"3": {"content": "<|im_start|>", "special": true}}}`))
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x01, 'a', 0x15}, []byte(`{}`))
	f.Add([]byte{}, []byte(`[]`))
	f.Fuzz(func(t *testing.T, model, config []byte) {
		tok, err := NewTokenizer("tokenizer.model", model, "tokenizer_config.json", config)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, "tokenizer") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		ids := tok.Encode("Hello, 世界 <|im_end|>\n\t  x")
		tok.Decode(ids)
		d := tok.NewStreamDecoder()
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	})
}

// FuzzParseConfig: config.json parsing returns a valid config or a one-line error naming the file.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(realConfig))
	f.Add([]byte(strings.Replace(realConfig, `"rope_type"`, `"type"`, 1)))
	f.Add([]byte(`{"architectures": ["InternLM3ForCausalLM"], "model_type": "internlm3"}`))
	f.Add([]byte(`{"hidden_size": 1e400}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("config.json", data)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "config.json: ") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		if c.HiddenSize <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 || c.HeadDim%2 != 0 || c.ContextLimit() < c.MaxPositionEmbeddings {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}
