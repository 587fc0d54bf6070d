package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ilmweb/ilmweb/internal/safefile"
)

// IndexFile is the name of the sharded-checkpoint index.
const IndexFile = "model.safetensors.index.json"

// Size caps, far above real checkpoints (an 8B model's index is ~30 KB; its whole weights in f32 are 32 GB)
// and checked before a file is read or mapped.
const (
	MaxIndexSize = 16 << 20
	MaxFileSize  = 64 << 30
)

// Checkpoint is a set of safetensors files forming one model: either a
// single file or the shards listed by model.safetensors.index.json.
type Checkpoint struct {
	Dir string

	files []*File          // every opened file, sorted by path
	where map[string]*File // tensor name -> file holding it
	names []string         // sorted
}

// OpenDir opens the checkpoint in dir: the shards named by
// model.safetensors.index.json if present, else model.safetensors, else the
// only *.safetensors file of the directory.
//
// With an index it checks that every file it references exists and is a
// valid safetensors file, that every tensor it lists is in its file, that no
// tensor is present in two files and that the files hold no tensor the index
// does not list.
func OpenDir(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Dir: dir, where: map[string]*File{}}
	idx := filepath.Join(dir, IndexFile)
	raw, err := safefile.ReadFile(idx, MaxIndexSize)
	switch {
	case err == nil:
		if err := c.openIndexed(idx, raw); err != nil {
			c.Close()
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := c.openSingle(); err != nil {
			c.Close()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	c.names = make([]string, 0, len(c.where))
	for n := range c.where {
		c.names = append(c.names, n)
	}
	slices.Sort(c.names)
	return c, nil
}

func (c *Checkpoint) openSingle() error {
	path := filepath.Join(c.Dir, "model.safetensors")
	if _, err := os.Stat(path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("safetensors: %w", err)
		}
		matches, err := filepath.Glob(filepath.Join(globEscape(c.Dir), "*.safetensors"))
		if err != nil {
			return fmt.Errorf("safetensors: %s: %w", oneLine(c.Dir), err)
		}
		switch len(matches) {
		case 0:
			return errf(c.Dir, "", "no %s, model.safetensors or *.safetensors file", IndexFile)
		case 1:
			path = matches[0]
		default:
			return errf(c.Dir, "", "%d *.safetensors files but no %s", len(matches), IndexFile)
		}
	}
	f, err := Open(path)
	if err != nil {
		return err
	}
	c.files = append(c.files, f)
	for _, t := range f.Header.Tensors {
		c.where[t.Name] = f
	}
	return nil
}

// globEscape escapes the glob metacharacters of a literal path.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) && !(r == '\\' && filepath.Separator == '\\') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (c *Checkpoint) openIndexed(idx string, raw []byte) error {
	weightMap, err := parseIndex(idx, raw)
	if err != nil {
		return err
	}
	// Group tensors by file, validating file names.
	byFile := map[string][]string{}
	for tensor, file := range weightMap {
		if !filepath.IsLocal(filepath.FromSlash(file)) {
			return errf(idx, tensor, "weight_map file %q is not a file name inside %s", file, c.Dir)
		}
		byFile[file] = append(byFile[file], tensor)
	}
	files := make([]string, 0, len(byFile))
	for file := range byFile {
		files = append(files, file)
	}
	slices.Sort(files)
	for _, file := range files {
		tensors := byFile[file]
		slices.Sort(tensors)
		path := filepath.Join(c.Dir, filepath.FromSlash(file))
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return errf(idx, tensors[0], "weight_map references %s, which does not exist", path)
			}
			return fmt.Errorf("safetensors: %w", err)
		}
		f, err := Open(path)
		if err != nil {
			return err
		}
		c.files = append(c.files, f)
		for _, t := range tensors {
			if _, ok := f.Info(t); !ok {
				return errf(path, t, "listed in %s but absent from the file", idx)
			}
		}
		for _, t := range f.Header.Tensors {
			if other, dup := c.where[t.Name]; dup {
				return errf(path, t.Name, "also present in %s", other.Path)
			}
			c.where[t.Name] = f
		}
	}
	for _, f := range c.files {
		for _, t := range f.Header.Tensors {
			if _, ok := weightMap[t.Name]; !ok {
				return errf(f.Path, t.Name, "present in the file but not listed in %s", idx)
			}
		}
	}
	return nil
}

// parseIndex reads model.safetensors.index.json, rejecting malformed JSON,
// duplicate keys and a missing or empty weight_map. Keys other than
// weight_map (metadata, ...) are ignored.
func parseIndex(idx string, raw []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	malformed := func(err error) error {
		return errf(idx, "", "malformed index JSON: %s", jsonErr(err))
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errf(idx, "", "malformed index: not a JSON object")
	}
	var weightMap map[string]string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, errf(idx, "", "malformed index: duplicate key %q", key)
		}
		seen[key] = true
		if key == "weight_map" {
			m, err := decodeStringMap(dec, idx, "", "weight_map")
			if err != nil {
				return nil, err
			}
			weightMap = m
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, malformed(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errf(idx, "", "malformed index: trailing data after the JSON object")
	}
	if len(weightMap) == 0 {
		return nil, errf(idx, "", "index has no weight_map entries")
	}
	return weightMap, nil
}

// Names returns every tensor name of the checkpoint, sorted. The slice is
// the caller's.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Info describes the named tensor.
func (c *Checkpoint) Info(name string) (TensorInfo, error) {
	f, ok := c.where[name]
	if !ok {
		return TensorInfo{}, errf(c.Dir, name, "no such tensor in the checkpoint")
	}
	t, _ := f.Info(name)
	return t, nil
}

// Bytes returns the tensor's raw little-endian bytes (see File.Bytes).
func (c *Checkpoint) Bytes(name string) ([]byte, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, errf(c.Dir, name, "no such tensor in the checkpoint")
	}
	return f.Bytes(name)
}

// Float32 returns the tensor converted to float32 (see File.Float32).
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, errf(c.Dir, name, "no such tensor in the checkpoint")
	}
	return f.Float32(name)
}

// FileOf returns the path of the file holding the tensor, or "" if none.
func (c *Checkpoint) FileOf(name string) string {
	if f, ok := c.where[name]; ok {
		return f.Path
	}
	return ""
}

// Files returns the opened files, sorted by path.
func (c *Checkpoint) Files() []*File { return slices.Clone(c.files) }

// Close closes every file.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
