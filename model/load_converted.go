package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"unsafe"

	"github.com/ilmweb/ilmweb/internal/safefile"
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
func loadConverted(dir string, progress func(done, total int64)) (*Model, error) {
	man, files, fetch, err := OpenConverted(dir)
	if err != nil {
		return nil, err
	}
	m, err := LoadConverted(man, files, fetch, progress)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	m.Dir = dir
	if !reflect.DeepEqual(m.Config, man.ModelConfig) {
		return nil, fmt.Errorf("%s: config.json differs from the manifest's config", dir)
	}
	return m, nil
}

// OpenConverted reads a converted directory as LoadConverted takes it (and as the browser hands it over):
// the manifest, the small files by name, and a fetch for the shards.
func OpenConverted(dir string) (*Manifest, map[string][]byte, func(shard int) ([]byte, error), error) {
	manPath := filepath.Join(dir, ManifestFile)
	raw, err := safefile.ReadFile(manPath, MaxManifestBytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	man, err := ParseManifest(manPath, raw)
	if err != nil {
		return nil, nil, nil, err
	}
	files := map[string][]byte{}
	for _, f := range man.Files {
		data, err := safefile.ReadFile(filepath.Join(dir, f.Name), f.Bytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue // optional files (generation_config.json) may be absent; LoadConverted checks the required ones
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read %s: %w", f.Name, err)
		}
		files[f.Name] = data
	}
	fetch := func(i int) ([]byte, error) {
		data, err := safefile.ReadFile(filepath.Join(dir, man.Shards[i].Name), man.Shards[i].Bytes)
		if err != nil {
			return nil, fmt.Errorf("read shard: %w", err)
		}
		return data, nil
	}
	return man, files, fetch, nil
}

// LoadConverted builds a model from a converted directory's manifest, its small files by name, and its
// shards, fetched one at a time in order: besides the weights (kept as stored: q4 stays q4), only one shard
// is held at a time. progress, when set, is told the shard bytes done so far. LoadConvertedWith can also
// hand each tensor to a consumer (the GPU engine) instead of keeping it.
func LoadConverted(man *Manifest, files map[string][]byte, fetch func(shard int) ([]byte, error), progress func(done, total int64)) (*Model, error) {
	return LoadConvertedWith(man, files, fetch, LoadOptions{Progress: progress})
}

// LoadOptions are LoadConvertedWith's settings.
type LoadOptions struct {
	// Progress, when set, is told the shard bytes done so far, after each shard.
	Progress func(done, total int64)
	// Sink, when set, receives every tensor of the model as soon as it is complete: when the shard that
	// holds its last part has been read (shards are read in order, so tensors arrive in the order of their
	// last parts, and in manifest order within a shard). q is the tensor as stored, [rows, cols] (a 1-D
	// tensor is one f32 row); it is the Sink's from then on. Unless the Sink returns keep, the loader drops
	// its own reference to a 2-D tensor: the model's Linear keeps its shape (Out, In) with Q (and W) nil.
	// Vectors (norms, biases: a few KB) are always kept. An error ends the load with it.
	//
	// With a Sink that keeps nothing, the CPU holds at most one shard and the tensors with parts in shards
	// read so far whose last part is still to come (for InternLM3-8B in q4: a 64 MiB shard and at most the
	// 282 MiB embedding or lm_head), never the whole model.
	Sink func(name string, q *QuantMatrix) (keep bool, err error)
}

// LoadConvertedWith is LoadConverted with every option.
func LoadConvertedWith(man *Manifest, files map[string][]byte, fetch func(shard int) ([]byte, error), o LoadOptions) (*Model, error) {
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

	// Every tensor the model needs must be listed with its shape before any shard is read.
	for _, spec := range CheckpointTensors(cfg) {
		t := man.Tensor(spec.Name)
		if t == nil {
			return nil, fmt.Errorf("%s: tensor %q is missing", ManifestFile, spec.Name)
		}
		if !reflect.DeepEqual(t.Shape, spec.Shape) {
			return nil, fmt.Errorf("%s: tensor %q: shape %v, want %v", ManifestFile, spec.Name, t.Shape, spec.Shape)
		}
	}
	w := &Weights{Layers: make([]Layer, cfg.NumHiddenLayers)}
	targets := map[string]weightTarget{}
	for _, e := range weightTable(cfg, w) {
		targets[e.name] = e.target
	}
	for _, t := range man.Tensors {
		if _, ok := targets[t.Name]; !ok {
			return nil, fmt.Errorf("%s: tensor %q is not part of the model", ManifestFile, t.Name)
		}
	}
	// A tensor is allocated when the shard with its first part is read, and complete after the shard with
	// its last part (ParseManifest checked that the parts cover its rows in order).
	type loading struct {
		t    *TensorEntry
		q    *QuantMatrix
		last int // shard of the last part
	}
	byShard := make([][]*loading, len(man.Shards)) // the tensors with a part in each shard, in manifest order
	for i := range man.Tensors {
		t := &man.Tensors[i]
		l := &loading{t: t, last: t.Parts[len(t.Parts)-1].Shard}
		for j, p := range t.Parts {
			if j == 0 || p.Shard != t.Parts[j-1].Shard {
				byShard[p.Shard] = append(byShard[p.Shard], l)
			}
		}
	}

	// Shard by shard, copy each part's words to its rows; hand over the tensors it completes.
	var done int64
	for i, sh := range man.Shards {
		data, err := fetch(i)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != sh.Bytes {
			return nil, fmt.Errorf("%s: %d bytes, the manifest says %d (run convert -verify)", sh.Name, len(data), sh.Bytes)
		}
		for _, l := range byShard[i] {
			t := l.t
			if l.q == nil {
				l.q = &QuantMatrix{DType: t.DType, Rows: t.Rows(), Cols: t.Cols(), Group: man.Quant.GroupSize}
				l.q.Data = make([]uint32, l.q.Rows*l.q.RowWords())
				if Quantized(l.q.DType) {
					l.q.Scales = make([]uint32, l.q.Rows*l.q.ScaleWords())
				}
			}
			q := l.q
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
		for _, l := range byShard[i] {
			if l.last != i {
				continue
			}
			q := l.q
			l.q = nil // from here on only the model (if kept) or the sink holds it
			if err := q.Check(); err != nil {
				return nil, fmt.Errorf("%s: tensor %q: %w", ManifestFile, l.t.Name, err)
			}
			keep := true
			if o.Sink != nil {
				if keep, err = o.Sink(l.t.Name, q); err != nil {
					return nil, err
				}
			}
			target := targets[l.t.Name]
			if lin := target.lin; lin != nil {
				lin.Out, lin.In = q.Rows, q.Cols
				if keep {
					lin.Q = q
				}
				continue
			}
			v := make([]float32, q.Cols) // 1-D tensors are one row
			q.DequantRow(0, v)
			*target.dst = v
		}
		done += sh.Bytes
		if o.Progress != nil {
			o.Progress(done, man.TotalBytes)
		}
	}
	return &Model{Config: cfg, Tokenizer: tok, Chat: chat, Stop: stop, Weights: w}, nil
}

// copyWords decodes little-endian u32 words from src into dst: a plain copy on a little-endian machine
// (wasm, amd64, arm64), which matters when a model's gigabytes pass through here.
func copyWords(dst []uint32, src []byte) {
	n := len(src) / 4
	if n == 0 {
		return
	}
	_ = dst[n-1] // bounds check: the copy below must stay inside dst
	if littleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*n), src[:4*n])
		return
	}
	for i := range n {
		dst[i] = binary.LittleEndian.Uint32(src[4*i:])
	}
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
