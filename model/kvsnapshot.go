package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// KVSnapshot is the keys and values of positions [0, len(Tokens)) of a decoder's cache.
type KVSnapshot struct {
	DType  string   // "f32" or "f16" (the cache's own element type; f16 is IEEE half, as the GPU engine packs it)
	Layers int      // NumHiddenLayers
	KVDim  int      // NumKeyValueHeads*HeadDim
	Tokens []int    // the token ids whose keys and values these are, in order
	K, V   [][]byte // per layer: len(Tokens)*KVDim elements, position-major, little-endian raw cache bytes
}

// KVState is a Decoder whose cache can be exported and imported: *CPU and *webgpu.Engine.
type KVState interface {
	ExportKV(tokens []int) (*KVSnapshot, error) // positions [0, len(tokens)) as they are in the cache now
	ImportKV(s *KVSnapshot) error               // writes positions [0, len(s.Tokens)); checks dtype/layers/kvdim/length against the decoder and MaxContext, error names the mismatch
}

// elemBytes is the size of one cache element of dtype, or 0 for an unknown dtype.
func elemBytes(dtype string) int {
	switch dtype {
	case "f32":
		return 4
	case "f16":
		return 2
	}
	return 0
}

// Check reports the first way s does not fit a decoder of c whose cache holds dtype elements for maxCtx
// positions, or whose own sizes disagree.
func (s *KVSnapshot) Check(c *Config, dtype string, maxCtx int) error {
	n := len(s.Tokens)
	switch {
	case s.DType != dtype:
		return fmt.Errorf("kv snapshot: dtype %q, the cache holds %q", s.DType, dtype)
	case s.Layers != c.NumHiddenLayers:
		return fmt.Errorf("kv snapshot: %d layers, the model has %d", s.Layers, c.NumHiddenLayers)
	case s.KVDim != c.KVDim():
		return fmt.Errorf("kv snapshot: kv dim %d, the model has %d", s.KVDim, c.KVDim())
	case n > maxCtx:
		return fmt.Errorf("kv snapshot: %d tokens exceed the context length %d", n, maxCtx)
	case len(s.K) != s.Layers || len(s.V) != s.Layers:
		return fmt.Errorf("kv snapshot: %d key and %d value layers, want %d", len(s.K), len(s.V), s.Layers)
	}
	for _, t := range s.Tokens {
		if t < 0 || t >= c.VocabSize {
			return fmt.Errorf("kv snapshot: token id %d outside vocab of %d", t, c.VocabSize)
		}
	}
	want := n * s.KVDim * elemBytes(dtype)
	for l := range s.Layers {
		if len(s.K[l]) != want || len(s.V[l]) != want {
			return fmt.Errorf("kv snapshot: layer %d has %d key and %d value bytes, want %d", l, len(s.K[l]), len(s.V[l]), want)
		}
	}
	return nil
}

// ExportKV copies the cache's positions [0, len(tokens)) as f32.
func (m *CPU) ExportKV(tokens []int) (*KVSnapshot, error) {
	c, n := m.Config, len(tokens)
	if n > m.Cache.MaxCtx {
		return nil, fmt.Errorf("export kv: %d tokens exceed the context length %d", n, m.Cache.MaxCtx)
	}
	s := &KVSnapshot{DType: "f32", Layers: c.NumHiddenLayers, KVDim: c.KVDim(), Tokens: slices.Clone(tokens)}
	for l := range s.Layers {
		s.K = append(s.K, f32Bytes(m.Cache.K[l][:n*s.KVDim]))
		s.V = append(s.V, f32Bytes(m.Cache.V[l][:n*s.KVDim]))
	}
	return s, nil
}

// ImportKV writes s into the cache's positions [0, len(s.Tokens)).
func (m *CPU) ImportKV(s *KVSnapshot) error {
	if err := s.Check(m.Config, "f32", m.Cache.MaxCtx); err != nil {
		return fmt.Errorf("import kv: %w", err)
	}
	for l := range s.Layers {
		bytesF32(m.Cache.K[l], s.K[l])
		bytesF32(m.Cache.V[l], s.V[l])
	}
	return nil
}

// f32Bytes is x as little-endian bytes.
func f32Bytes(x []float32) []byte {
	b := make([]byte, 0, 4*len(x))
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// bytesF32 decodes the little-endian floats of b into dst.
func bytesF32(dst []float32, b []byte) {
	for i := range len(b) / 4 {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// Snapshot exports the cache's first n positions (n ≤ len(cached)); the decoder must be a KVState.
func (s *Session) Snapshot(n int) (*KVSnapshot, error) {
	kv, ok := s.dec.(KVState)
	if !ok {
		return nil, fmt.Errorf("snapshot: the decoder %T cannot export its cache", s.dec)
	}
	if n < 0 || n > len(s.cached) {
		return nil, fmt.Errorf("snapshot: %d positions asked, %d cached", n, len(s.cached))
	}
	return kv.ExportKV(s.cached[:n])
}

// Restore imports snap into the decoder and makes snap.Tokens the cached prefix (so the next Generate
// whose prompt starts with them prefills only the rest).
func (s *Session) Restore(snap *KVSnapshot) error {
	kv, ok := s.dec.(KVState)
	if !ok {
		return fmt.Errorf("restore: the decoder %T cannot import a cache", s.dec)
	}
	if err := kv.ImportKV(snap); err != nil {
		s.cached = s.cached[:0] // the cache may be half-written: forget it
		return fmt.Errorf("restore: %w", err)
	}
	s.cached = append(s.cached[:0], snap.Tokens...)
	return nil
}

// The blob of EncodeKV: kvMagic, then little-endian uint32s: kvVersion, the key's length and bytes, the
// dtype's length and bytes, layers, kv dim, the token count n and the n token ids; then per layer its n·kv
// dim keys, then values, as raw cache bytes; last, the SHA-256 of everything before it.
const (
	kvMagic     = "ILMKV"
	kvVersion   = 1
	maxKVLayers = 1 << 16 // more is no model: a blob claiming it is damaged
)

// EncodeKV serializes s as a self-checking blob bound to key (an identity string the caller makes from
// the model, engine version and dtype): magic "ILMKV", format version, key, dtype, layers, kvdim, token
// count, the token ids, the payload, and a SHA-256 over everything before it. A snapshot whose sizes
// disagree encodes to a blob DecodeKV rejects.
func EncodeKV(s *KVSnapshot, key string) []byte {
	size := len(kvMagic) + 4*(7+len(s.Tokens)) + len(key) + len(s.DType) + sha256.Size
	for l := range s.K {
		size += len(s.K[l])
	}
	for l := range s.V {
		size += len(s.V[l])
	}
	b := make([]byte, 0, size)
	u32 := func(v int) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	b = append(b, kvMagic...)
	u32(kvVersion)
	u32(len(key))
	b = append(b, key...)
	u32(len(s.DType))
	b = append(b, s.DType...)
	u32(s.Layers)
	u32(s.KVDim)
	u32(len(s.Tokens))
	for _, t := range s.Tokens {
		u32(t)
	}
	for l := range max(len(s.K), len(s.V)) {
		if l < len(s.K) {
			b = append(b, s.K[l]...)
		}
		if l < len(s.V) {
			b = append(b, s.V[l]...)
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// kvReader reads a blob's fields, failing on the first that runs past its end.
type kvReader struct {
	b   []byte
	off int
}

// next returns the next n bytes, or false when fewer are left.
func (r *kvReader) next(n uint64) ([]byte, bool) {
	if n > uint64(len(r.b)-r.off) {
		return nil, false
	}
	p := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return p, true
}

func (r *kvReader) u32() (uint64, bool) {
	p, ok := r.next(4)
	if !ok {
		return 0, false
	}
	return uint64(binary.LittleEndian.Uint32(p)), true
}

// DecodeKV parses and verifies a blob: a wrong magic, version or key, a truncated or oversized blob,
// sizes that do not agree, or a hash mismatch are errors that say which (one line); it never panics on
// any input. The snapshot's K and V share b's memory.
func DecodeKV(b []byte, key string) (*KVSnapshot, error) {
	if len(b) < sha256.Size {
		return nil, fmt.Errorf("kv blob: truncated: %d bytes", len(b))
	}
	r := &kvReader{b: b[:len(b)-sha256.Size]}
	truncated := func(what string) error {
		return fmt.Errorf("kv blob: truncated in the %s (%d bytes)", what, len(b))
	}
	magic, ok := r.next(uint64(len(kvMagic)))
	if !ok {
		return nil, truncated("magic")
	}
	if string(magic) != kvMagic {
		return nil, fmt.Errorf("kv blob: wrong magic %q, want %q", magic, kvMagic)
	}
	version, ok := r.u32()
	if !ok {
		return nil, truncated("version")
	}
	if version != kvVersion {
		return nil, fmt.Errorf("kv blob: format version %d, want %d", version, kvVersion)
	}
	field := func(what string) ([]byte, error) {
		n, ok := r.u32()
		if !ok {
			return nil, truncated(what)
		}
		p, ok := r.next(n)
		if !ok {
			return nil, truncated(what)
		}
		return p, nil
	}
	k, err := field("key")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(k, []byte(key)) {
		return nil, fmt.Errorf("kv blob: wrong key %q, want %q", clip(k), clip([]byte(key)))
	}
	dtype, err := field("dtype")
	if err != nil {
		return nil, err
	}
	es := elemBytes(string(dtype))
	if es == 0 {
		return nil, fmt.Errorf("kv blob: unknown dtype %q", clip(dtype))
	}
	var dims [3]uint64 // layers, kv dim, tokens
	for i, what := range []string{"layers", "kv dim", "token count"} {
		if dims[i], ok = r.u32(); !ok {
			return nil, truncated(what)
		}
	}
	layers, kvDim, n := dims[0], dims[1], dims[2]
	if layers > maxKVLayers || kvDim > math.MaxInt32 {
		return nil, fmt.Errorf("kv blob: sizes out of range: %d layers, kv dim %d", layers, kvDim)
	}
	left := uint64(len(r.b) - r.off)
	// The sizes must agree with the bytes left: every product is checked against them before it is formed.
	if n > left/4 {
		return nil, fmt.Errorf("kv blob: truncated: %d token ids need more than the %d bytes left", n, left)
	}
	payload := left - 4*n
	var per uint64 // bytes of one layer's keys (or values)
	if kvDim > 0 && n > 0 {
		if kvDim > payload/n/uint64(es) {
			return nil, fmt.Errorf("kv blob: truncated: %d tokens of kv dim %d exceed the %d payload bytes", n, kvDim, payload)
		}
		per = n * kvDim * uint64(es)
		if layers > payload/per/2 {
			return nil, fmt.Errorf("kv blob: truncated: %d layers of %d bytes exceed the %d payload bytes", layers, 2*per, payload)
		}
	}
	if want := 2 * layers * per; payload > want {
		return nil, fmt.Errorf("kv blob: %d extra bytes after %d layers of %d tokens of kv dim %d", payload-want, layers, n, kvDim)
	}
	if sum := sha256.Sum256(r.b); !bytes.Equal(sum[:], b[len(r.b):]) {
		return nil, fmt.Errorf("kv blob: SHA-256 mismatch: the blob is damaged")
	}
	s := &KVSnapshot{DType: string(dtype), Layers: int(layers), KVDim: int(kvDim), Tokens: make([]int, n)}
	for i := range s.Tokens {
		t, _ := r.u32()
		if t > math.MaxInt32 {
			return nil, fmt.Errorf("kv blob: token id %d out of range", t)
		}
		s.Tokens[i] = int(t)
	}
	s.K, s.V = make([][]byte, layers), make([][]byte, layers)
	for l := range s.K {
		s.K[l], _ = r.next(per)
		s.V[l], _ = r.next(per)
	}
	return s, nil
}

// clip shortens a string from a blob for an error message.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
