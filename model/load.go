package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/ilmweb/ilmweb/internal/safefile"
	"github.com/ilmweb/ilmweb/safetensors"
)

// Size caps on the small files of a model directory, far above what InternLM3's own need (its JSON files
// are a few KB, tokenizer.model a few MB): a larger file is not one of them, and is refused before it is read.
const (
	MaxJSONFileBytes        = 1 << 20  // config.json, generation_config.json
	MaxTokenizerModelBytes  = 32 << 20 // tokenizer.model
	MaxTokenizerConfigBytes = 8 << 20  // tokenizer_config.json (its chat template and added tokens)
)

// FileLimit is the size cap on the small file name of a model directory: one of the above, or
// MaxJSONFileBytes for the others (the system prompts).
func FileLimit(name string) int64 {
	switch name {
	case "tokenizer.model":
		return MaxTokenizerModelBytes
	case "tokenizer_config.json":
		return MaxTokenizerConfigBytes
	}
	return MaxJSONFileBytes
}

// Model is everything needed to chat: configuration, tokenizer, chat format, stop ids and weights.
type Model struct {
	Dir       string
	Config    *Config
	Tokenizer *Tokenizer
	Chat      *ChatFormat
	Stop      []int // eos ids from generation_config.json
	Weights   *Weights
}

// Load reads a model directory: an HF checkpoint (config.json, safetensors, tokenizer files) or a converted
// one (manifest.json, shards, tokenizer files; see load_converted.go).
func Load(dir string) (*Model, error) { return LoadWithProgress(dir, nil) }

// LoadWithProgress is Load, telling progress (when set) the shard bytes of a converted model read so far.
func LoadWithProgress(dir string, progress func(done, total int64)) (*Model, error) {
	if IsConverted(dir) {
		return loadConverted(dir, progress)
	}
	m, err := LoadTokenizerOnly(dir)
	if err != nil {
		return nil, err
	}
	ckpt, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer ckpt.Close()
	m.Weights, err = LoadWeights(m.Config, hfSource{ckpt})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// LoadTokenizerOnly reads the configuration and tokenizer of a model dir, not its weights.
func LoadTokenizerOnly(dir string) (*Model, error) {
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	tok, err := LoadTokenizer(dir)
	if err != nil {
		return nil, err
	}
	chat, err := NewChatFormat(tok)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	stop, err := loadStopIDs(filepath.Join(dir, "generation_config.json"), cfg, chat)
	if err != nil {
		return nil, err
	}
	return &Model{Dir: dir, Config: cfg, Tokenizer: tok, Chat: chat, Stop: stop}, nil
}

// loadStopIDs reads eos_token_id (a number or a list) from generation_config.json. Without the file it
// falls back to config.json's eos and <|im_end|>, since stopping on eos alone runs past the turn.
func loadStopIDs(path string, cfg *Config, chat *ChatFormat) ([]int, error) {
	data, err := safefile.ReadFile(path, MaxJSONFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return []int{cfg.EOSTokenID, chat.EndOfTurn()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read generation config: %w", err)
	}
	return parseStopIDs(path, data, cfg)
}

// parseStopIDs reads eos_token_id (a number or a list) from generation_config.json's contents.
func parseStopIDs(path string, data []byte, cfg *Config) ([]int, error) {
	var gc struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(data, &gc); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	var ids []int
	var one int
	switch {
	case gc.EOS == nil:
		return nil, fmt.Errorf("%s: missing field \"eos_token_id\"", path)
	case json.Unmarshal(gc.EOS, &one) == nil:
		ids = []int{one}
	case json.Unmarshal(gc.EOS, &ids) == nil && len(ids) > 0:
	default:
		return nil, fmt.Errorf("%s: field \"eos_token_id\": want an id or a non-empty list of ids, got %s", path, gc.EOS)
	}
	for _, id := range ids {
		if id < 0 || id >= cfg.VocabSize {
			return nil, fmt.Errorf("%s: field \"eos_token_id\": %d outside vocab of %d", path, id, cfg.VocabSize)
		}
	}
	return ids, nil
}

// hfSource reads tensors from a safetensors checkpoint, checking each shape against the config.
type hfSource struct{ ckpt *safetensors.Checkpoint }

func (s hfSource) Float32(name string, shape []int) ([]float32, error) {
	info, err := s.ckpt.Info(name)
	if err != nil {
		return nil, err
	}
	if !sameShape(info.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q: shape %v, want %v", s.ckpt.FileOf(name), name, info.Shape, shape)
	}
	return s.ckpt.Float32(name)
}

func sameShape(got []int64, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != int64(want[i]) {
			return false
		}
	}
	return true
}
