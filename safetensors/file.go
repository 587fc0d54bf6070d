package safetensors

import (
	"slices"
)

// File is one opened safetensors file. On native platforms the file is
// memory-mapped read-only; slices returned by Bytes are views into that
// mapping and must neither be modified nor used after Close.
type File struct {
	Path   string
	Header *Header

	data   []byte         // the whole file (mapping or buffer); nil once closed
	byName map[string]int // index into Header.Tensors
	unmap  func() error   // releases data
}

// newFile validates data (the whole file) and builds the lookup table.
func newFile(path string, data []byte, size int64, unmap func() error) (*File, error) {
	h, err := ParseHeader(path, data, size)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path, Header: h, data: data, unmap: unmap, byName: make(map[string]int, len(h.Tensors))}
	for i, t := range h.Tensors {
		f.byName[t.Name] = i
	}
	return f, nil
}

// Close releases the mapping. Slices obtained from Bytes become invalid.
func (f *File) Close() error {
	if f.data == nil {
		return nil
	}
	f.data = nil
	if f.unmap != nil {
		u := f.unmap
		f.unmap = nil
		return u()
	}
	return nil
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Header.Tensors))
	for _, t := range f.Header.Tensors {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Header.Tensors[i], true
}

func (f *File) lookup(name string) (TensorInfo, error) {
	if f.data == nil {
		return TensorInfo{}, errf(f.Path, name, "file is closed")
	}
	t, ok := f.Info(name)
	if !ok {
		return TensorInfo{}, errf(f.Path, name, "no such tensor")
	}
	return t, nil
}

// Bytes returns the tensor's raw little-endian bytes: a read-only view into
// the file, valid until Close.
func (f *File) Bytes(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	b, e := f.Header.DataStart+t.Begin, f.Header.DataStart+t.End
	return f.data[b:e:e], nil
}

// Float32 returns a freshly allocated copy of a BF16, F16 or F32 tensor
// converted to float32. Other dtypes are an error.
func (f *File) Float32(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case BF16, F16, F32:
	default:
		return nil, errf(f.Path, name, "dtype %s cannot be converted to float32 (only BF16, F16, F32)", t.DType)
	}
	raw, _ := f.Bytes(name)
	out := make([]float32, len(raw)/t.DType.Size())
	if err := convertToFloat32(out, raw, t.DType); err != nil {
		return nil, errf(f.Path, name, "%s", err.Error())
	}
	return out, nil
}
