// Package converter turns a Hugging Face InternLM3 checkpoint into the directory a browser streams:
// manifest.json, content-addressed weight shards laid out for WGSL, and the tokenizer and config files
// (docs/FORMAT.md). It also downloads checkpoints from the Hub (hub.go) and verifies converted dirs.
package converter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/ilmweb/ilmweb/internal/safefile"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/safetensors"
)

// Options configures Convert. The zero value converts to q4 with groups of 32 in 64 MiB shards.
type Options struct {
	Quant     string // dtype of 2-D tensors: q4 (default), q8, f16 or f32
	LMHead    string // dtype of lm_head.weight ("" = Quant)
	Group     int    // columns per f16 scale for q4/q8 (default 32; a multiple of 8)
	ShardSize int64  // largest shard in bytes (default 64 MiB)
	Force     bool   // replace a non-empty DST (only once the conversion has succeeded)
	CacheDir  string // where hub downloads go ("" = DefaultCacheDir)
	Workers   int    // quantizing goroutines (default GOMAXPROCS)
	// Progress, if set, is called with stage "download" (hub bytes) or "convert" (source tensor bytes).
	Progress func(stage string, done, total int64)

	create func(path string) (io.WriteCloser, error) // opens output files; tests inject failures
}

const DefaultShardSize = 64 << 20

func (o *Options) setDefaults() error {
	if o.Quant == "" {
		o.Quant = model.DTypeQ4
	}
	if o.LMHead == "" {
		o.LMHead = o.Quant
	}
	if o.Group == 0 {
		o.Group = 32
	}
	if o.ShardSize == 0 {
		o.ShardSize = DefaultShardSize
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.create == nil {
		o.create = func(path string) (io.WriteCloser, error) { return os.Create(path) }
	}
	for _, q := range []struct{ flag, v string }{{"quant", o.Quant}, {"lm-head", o.LMHead}} {
		if model.ValuesPerWord(q.v) == 0 {
			return fmt.Errorf("-%s %q: want q4, q8, f16 or f32", q.flag, q.v)
		}
	}
	if o.Group < 8 || o.Group%8 != 0 {
		return fmt.Errorf("-group %d: want a positive multiple of 8", o.Group)
	}
	if o.ShardSize < 4096 || o.ShardSize > model.MaxShardBytes {
		return fmt.Errorf("-shard-size %d: want 4096 to %d bytes (model.MaxShardBytes)", o.ShardSize, model.MaxShardBytes)
	}
	return nil
}

// Source files copied next to the manifest (generation_config.json only when the checkpoint has one).
var copiedFiles = []string{"config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json"}

// Convert converts the checkpoint at src (a local HF directory, or a hub id owner/name that is first
// downloaded into opts.CacheDir) into dst. Everything is checked before anything is written; the output
// is built in a temporary sibling of dst and renamed into place at the end, so on any error or
// cancellation nothing is left at dst (and with Force an existing dst is only replaced on success).
func Convert(ctx context.Context, src, dst string, opts Options) (*model.Manifest, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := checkDst(dst, opts.Force); err != nil {
		return nil, err
	}
	source := filepath.Base(filepath.Clean(src))
	if IsHubID(src) {
		source = src
		dir, err := Download(ctx, src, opts.CacheDir, DownloadOptions{Progress: func(done, total int64) {
			if opts.Progress != nil {
				opts.Progress("download", done, total)
			}
		}})
		if err != nil {
			return nil, err
		}
		src = dir
	}
	if sameDir(src, dst) {
		return nil, fmt.Errorf("output %s is the source directory", dst)
	}
	in, err := openSource(ctx, src)
	if err != nil {
		return nil, err
	}
	defer in.ckpt.Close()
	man := &model.Manifest{
		Format: model.ManifestFormat, Version: model.ManifestVersion, Source: source, Config: in.config,
		Quant: model.QuantScheme{Scheme: opts.Quant, GroupSize: opts.Group, LMHead: opts.LMHead},
	}
	for _, t := range in.tensors {
		dtype := opts.Quant
		switch {
		case len(t.Shape) == 1:
			dtype = model.DTypeF32
		case t.Name == "lm_head.weight":
			dtype = opts.LMHead
		}
		man.Tensors = append(man.Tensors, model.TensorEntry{Name: t.Name, DType: dtype, Shape: t.Shape})
	}
	shardSizes, err := layout(man.Tensors, opts.Group, opts.ShardSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}

	// Build in a temporary sibling, then rename.
	parent := filepath.Dir(filepath.Clean(dst))
	undoParents, err := createParents(parent)
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	done := false
	defer func() {
		if !done {
			undoParents()
		}
	}()
	removeStale(dst)
	tmp, err := os.MkdirTemp(parent, tmpPrefix(dst))
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	lockFile, err := lock(filepath.Join(tmp, lockName))
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	defer lockFile.Close()
	c := &conversion{opts: &opts, in: in, man: man, dir: tmp, shardSizes: shardSizes}
	if err := c.run(ctx); err != nil {
		return nil, err
	}
	files := append(in.files, namedFile{"system-prompt.txt", []byte(model.SystemPrompt)},
		namedFile{"thinking-system-prompt.txt", []byte(model.ThinkingSystemPrompt)})
	for _, f := range files {
		if err := c.writeFile(f.name, f.data); err != nil {
			return nil, err
		}
		man.Files = append(man.Files, model.FileEntry{Name: f.name, Bytes: int64(len(f.data)), SHA256: sha256Of(f.data)})
	}
	data, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	if _, err := model.ParseManifest(model.ManifestFile, data); err != nil { // the converter's own check
		return nil, fmt.Errorf("internal error: %w", err)
	}
	if err := c.writeFile(model.ManifestFile, data); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The lock file stays open (and locked) until the rename: only its name leaves the output.
	if err := os.Remove(filepath.Join(tmp, lockName)); err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	if err := replaceDir(tmp, dst); err != nil {
		return nil, err
	}
	done = true
	return man, nil
}

// checkDst refuses a dst that is a file, or a non-empty directory unless force.
func checkDst(dst string, force bool) error {
	st, err := os.Stat(dst)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case !st.IsDir():
		return fmt.Errorf("output %s exists and is not a directory", dst)
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if len(entries) > 0 && !force {
		return fmt.Errorf("output %s is not empty (use -force to replace it)", dst)
	}
	return nil
}

// sameDir reports whether a and b name the same existing directory.
func sameDir(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// replaceDir renames tmp to dst, moving an existing dst aside first and deleting it afterwards.
func replaceDir(tmp, dst string) error {
	old := ""
	if _, err := os.Stat(dst); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dst, old); err != nil {
			return fmt.Errorf("replace output: %w", err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		if old != "" {
			os.Rename(old, dst)
		}
		return fmt.Errorf("replace output: %w", err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// input is a checked source checkpoint: the tensors the model needs with where their bytes are.
type input struct {
	config  json.RawMessage
	files   []namedFile // copiedFiles present in dir
	ckpt    *safetensors.Checkpoint
	tensors []srcTensor
}

type namedFile struct {
	name string
	data []byte
}

type srcTensor struct {
	model.TensorSpec
	path   string            // safetensors file
	offset int64             // of the tensor's first byte in the file
	dtype  safetensors.DType // BF16, F16 or F32
}

// openSource checks the config, tokenizer and chat files, every safetensors header, and that every
// tensor the config calls for is present with its shape and a float dtype, and no other tensor is.
func openSource(ctx context.Context, dir string) (*input, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", dir)
	}
	// LoadTokenizerOnly validates config.json, tokenizer.model, tokenizer_config.json, the chat markers
	// and generation_config.json.
	tm, err := model.LoadTokenizerOnly(dir)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := &input{}
	for _, name := range copiedFiles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := safefile.ReadFile(filepath.Join(dir, name), model.FileLimit(name))
		if errors.Is(err, os.ErrNotExist) && name == "generation_config.json" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		in.files = append(in.files, namedFile{name, data})
		if name == "config.json" {
			in.config = data
		}
	}
	if in.ckpt, err = safetensors.OpenDir(dir); err != nil {
		return nil, err
	}
	files := map[string]*safetensors.File{}
	for _, f := range in.ckpt.Files() {
		files[f.Path] = f
	}
	fail := func(err error) (*input, error) {
		in.ckpt.Close()
		return nil, err
	}
	wanted := map[string]bool{}
	for _, spec := range model.CheckpointTensors(tm.Config) {
		wanted[spec.Name] = true
		info, err := in.ckpt.Info(spec.Name)
		if err != nil {
			return fail(err)
		}
		path := in.ckpt.FileOf(spec.Name)
		if !slices.EqualFunc(info.Shape, spec.Shape, func(a int64, b int) bool { return a == int64(b) }) {
			return fail(fmt.Errorf("%s: tensor %q: shape %v, want %v", path, spec.Name, info.Shape, spec.Shape))
		}
		switch info.DType {
		case safetensors.BF16, safetensors.F16, safetensors.F32:
		default:
			return fail(fmt.Errorf("%s: tensor %q: dtype %s, want BF16, F16 or F32", path, spec.Name, info.DType))
		}
		in.tensors = append(in.tensors, srcTensor{spec, path, files[path].Header.DataStart + info.Begin, info.DType})
	}
	for _, name := range in.ckpt.Names() {
		if !wanted[name] && !strings.HasSuffix(name, ".rotary_emb.inv_freq") {
			return fail(fmt.Errorf("%s: tensor %q is not part of the model this config describes", in.ckpt.FileOf(name), name))
		}
	}
	return in, nil
}

func sha256Of(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
