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
// does that). 2-D tensors are dequantized to float32 Linear.W and also kept as they are stored in Linear.Q.
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
	m, err := LoadTokenizerOnly(dir)
	if err != nil {
		return nil, err
	}
	if !reflect.DeepEqual(m.Config, man.ModelConfig) {
		return nil, fmt.Errorf("%s: config.json differs from the manifest's config", dir)
	}
	src := &convertedSource{dir: dir, man: man, quant: map[string]*QuantMatrix{}}
	defer src.close()
	for i, s := range man.Shards {
		f, err := os.Open(filepath.Join(dir, s.Name))
		if err != nil {
			return nil, fmt.Errorf("open shard: %w", err)
		}
		src.shards = append(src.shards, f)
		if st, err := f.Stat(); err != nil || st.Size() != s.Bytes {
			return nil, fmt.Errorf("%s: shard %d is not %d bytes as the manifest says (run convert -verify)", f.Name(), i, s.Bytes)
		}
	}
	if m.Weights, err = LoadWeights(m.Config, src); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, e := range weightTable(m.Config, m.Weights) {
		used[e.name] = true
		if e.target.lin != nil {
			e.target.lin.Q = src.quant[e.name]
		}
	}
	for _, t := range man.Tensors {
		if !used[t.Name] {
			return nil, fmt.Errorf("%s: tensor %q is not part of the model", manPath, t.Name)
		}
	}
	return m, nil
}

// convertedSource is the TensorSource of a converted directory. It remembers the stored form of every
// 2-D tensor it decodes.
type convertedSource struct {
	dir    string
	man    *Manifest
	shards []*os.File
	quant  map[string]*QuantMatrix
}

func (s *convertedSource) close() {
	for _, f := range s.shards {
		f.Close()
	}
}

func (s *convertedSource) Float32(name string, shape []int) ([]float32, error) {
	where := filepath.Join(s.dir, ManifestFile)
	t := s.man.Tensor(name)
	if t == nil {
		return nil, fmt.Errorf("%s: tensor %q is missing", where, name)
	}
	if !reflect.DeepEqual(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q: shape %v, want %v", where, name, t.Shape, shape)
	}
	q, err := s.read(t)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", where, name, err)
	}
	out := make([]float32, q.Rows*q.Cols)
	parallelFor(q.Rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			q.DequantRow(r, out[r*q.Cols:(r+1)*q.Cols])
		}
	})
	if len(shape) == 2 {
		s.quant[name] = q
	}
	return out, nil
}

// read assembles a tensor from its parts: the word layouts are relative to a part's first row, so the
// parts' arrays concatenated in row order are the whole matrix.
func (s *convertedSource) read(t *TensorEntry) (*QuantMatrix, error) {
	q := &QuantMatrix{DType: t.DType, Rows: t.Rows(), Cols: t.Cols(), Group: s.man.Quant.GroupSize}
	for _, p := range t.Parts {
		var err error
		if q.Data, err = s.appendWords(q.Data, p.Shard, p.Data); err != nil {
			return nil, err
		}
		if p.Scales != nil {
			if q.Scales, err = s.appendWords(q.Scales, p.Shard, *p.Scales); err != nil {
				return nil, err
			}
		}
	}
	return q, q.Check()
}

func (s *convertedSource) appendWords(dst []uint32, shard int, sp Span) ([]uint32, error) {
	buf := make([]byte, sp.Bytes)
	if _, err := s.shards[shard].ReadAt(buf, sp.Offset); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.shards[shard].Name(), err)
	}
	for i := 0; i < len(buf); i += 4 {
		dst = append(dst, binary.LittleEndian.Uint32(buf[i:]))
	}
	return dst, nil
}
