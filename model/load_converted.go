package model

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
)

// TensorSpec is a checkpoint tensor the model needs: its HF name and PyTorch shape.
type TensorSpec struct {
	Name  string
	Shape []int
}

// CheckpointTensors lists every tensor the config calls for, in the order a converted model stores them:
// the embedding, each layer's tensors, the final norm, lm_head.
func CheckpointTensors(c *Config) []TensorSpec {
	var first, last []TensorSpec
	for _, e := range weightTable(c, &Weights{Layers: make([]Layer, c.NumHiddenLayers)}) {
		s := TensorSpec{e.name, e.target.shape}
		if e.name == "model.norm.weight" || e.name == "lm_head.weight" {
			last = append(last, s)
		} else {
			first = append(first, s)
		}
	}
	return append(first, last...)
}

// IsConverted reports whether dir is a converted model directory (it holds manifest.json).
func IsConverted(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ManifestFile))
	return err == nil
}

// loadConverted reads a converted model directory. Sizes are checked, hashes are not (convert -verify
// does that).
func loadConverted(dir string) (*Model, error) {
	manPath := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(manPath)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	man, err := ParseManifest(manPath, raw)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, f := range man.Files {
		data, err := os.ReadFile(filepath.Join(dir, f.Name))
		if os.IsNotExist(err) {
			continue // optional files (generation_config.json) may be absent; required ones are checked below
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name, err)
		}
		files[f.Name] = data
	}
	fetch := func(i int) ([]byte, error) {
		path := filepath.Join(dir, man.Shards[i].Name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read shard: %w", err)
		}
		return data, nil
	}
	m, err := LoadConverted(man, files, fetch, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	m.Dir = dir
	if !reflect.DeepEqual(m.Config, man.ModelConfig) {
		return nil, fmt.Errorf("%s: config.json differs from the manifest's config", dir)
	}
	return m, nil
}

// LoadConverted builds a model from a converted directory's manifest, its small files by name, and its
// shards, fetched one at a time in order: besides the weights (kept as stored: q4 stays q4), only one shard
// is held at a time. progress, when set, is told the shard bytes done so far. The browser engine loads
// through it with shards from its cache.
func LoadConverted(man *Manifest, files map[string][]byte, fetch func(shard int) ([]byte, error), progress func(done, total int64)) (*Model, error) {
	need := func(name string) ([]byte, error) {
		data, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("missing %s", name)
		}
		return data, nil
	}
	cfgData, err := need("config.json")
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig("config.json", cfgData)
	if err != nil {
		return nil, err
	}
	tokModel, err := need("tokenizer.model")
	if err != nil {
		return nil, err
	}
	tokCfg, err := need("tokenizer_config.json")
	if err != nil {
		return nil, err
	}
	tok, err := NewTokenizer("tokenizer.model", tokModel, "tokenizer_config.json", tokCfg)
	if err != nil {
		return nil, err
	}
	chat, err := NewChatFormat(tok)
	if err != nil {
		return nil, err
	}
	stop := []int{cfg.EOSTokenID, chat.EndOfTurn()}
	if data, ok := files["generation_config.json"]; ok {
		if stop, err = parseStopIDs("generation_config.json", data, cfg); err != nil {
			return nil, err
		}
	}

	// Every tensor the model needs, allocated in its stored form before any shard arrives.
	quant := map[string]*QuantMatrix{}
	for _, spec := range CheckpointTensors(cfg) {
		t := man.Tensor(spec.Name)
		if t == nil {
			return nil, fmt.Errorf("%s: tensor %q is missing", ManifestFile, spec.Name)
		}
		if !reflect.DeepEqual(t.Shape, spec.Shape) {
			return nil, fmt.Errorf("%s: tensor %q: shape %v, want %v", ManifestFile, spec.Name, t.Shape, spec.Shape)
		}
		q := &QuantMatrix{DType: t.DType, Rows: t.Rows(), Cols: t.Cols(), Group: man.Quant.GroupSize}
		q.Data = make([]uint32, q.Rows*q.RowWords())
		if Quantized(q.DType) {
			q.Scales = make([]uint32, q.Rows*q.ScaleWords())
		}
		quant[spec.Name] = q
	}
	for _, t := range man.Tensors {
		if quant[t.Name] == nil {
			return nil, fmt.Errorf("%s: tensor %q is not part of the model", ManifestFile, t.Name)
		}
	}

	// Shard by shard, copy each part's words to its rows.
	var done int64
	for i, sh := range man.Shards {
		data, err := fetch(i)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != sh.Bytes {
			return nil, fmt.Errorf("%s: %d bytes, the manifest says %d (run convert -verify)", sh.Name, len(data), sh.Bytes)
		}
		for _, t := range man.Tensors {
			q := quant[t.Name]
			for _, p := range t.Parts {
				if p.Shard != i {
					continue
				}
				r0 := p.Rows[0]
				copyWords(q.Data[r0*q.RowWords():], data[p.Data.Offset:p.Data.Offset+p.Data.Bytes])
				if p.Scales != nil {
					copyWords(q.Scales[r0*q.ScaleWords():], data[p.Scales.Offset:p.Scales.Offset+p.Scales.Bytes])
				}
			}
		}
		done += sh.Bytes
		if progress != nil {
			progress(done, man.TotalBytes)
		}
	}

	w := &Weights{Layers: make([]Layer, cfg.NumHiddenLayers)}
	for _, e := range weightTable(cfg, w) {
		q := quant[e.name]
		if err := q.Check(); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", ManifestFile, e.name, err)
		}
		if l := e.target.lin; l != nil {
			l.Out, l.In, l.Q = q.Rows, q.Cols, q
			continue
		}
		v := make([]float32, q.Cols) // 1-D tensors are one row
		q.DequantRow(0, v)
		*e.target.dst = v
	}
	return &Model{Config: cfg, Tokenizer: tok, Chat: chat, Stop: stop, Weights: w}, nil
}

// copyWords decodes little-endian u32 words from src into dst.
func copyWords(dst []uint32, src []byte) {
	for i := range len(src) / 4 {
		dst[i] = binary.LittleEndian.Uint32(src[4*i:])
	}
}
