package model

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

const testKVKey = "tiny/seed1/cpu-f32"

// testSnapshot is a small snapshot with distinct bytes everywhere.
func testSnapshot() *KVSnapshot {
	s := &KVSnapshot{DType: "f16", Layers: 2, KVDim: 4, Tokens: []int{1, 7, 3}}
	for l := range s.Layers {
		k, v := make([]byte, 3*4*2), make([]byte, 3*4*2)
		for i := range k {
			k[i], v[i] = byte(l*100+i), byte(l*100+i+50)
		}
		s.K, s.V = append(s.K, k), append(s.V, v)
	}
	return s
}

// rehash replaces b's trailing SHA-256 with the right one for its new contents.
func rehash(b []byte) []byte {
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	copy(b[len(b)-sha256.Size:], sum[:])
	return b
}

func TestKVEncodeDecodeRoundTrip(t *testing.T) {
	s := testSnapshot()
	got, err := DecodeKV(EncodeKV(s, testKVKey), testKVKey)
	require.NoError(t, err)
	require.Equal(t, s, got)

	empty := &KVSnapshot{DType: "f32", Layers: 3, KVDim: 8, K: make([][]byte, 3), V: make([][]byte, 3)}
	got, err = DecodeKV(EncodeKV(empty, ""), "")
	require.NoError(t, err)
	require.Equal(t, 3, got.Layers)
	require.Empty(t, got.Tokens)
}

func TestKVDecodeDamage(t *testing.T) {
	good := EncodeKV(testSnapshot(), testKVKey)
	damage := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	versionAt := len(kvMagic)
	cases := []struct {
		name, want string
		blob       []byte
	}{
		{"flipped payload byte", "SHA-256 mismatch", damage(func(b []byte) []byte { b[len(b)-sha256.Size-5] ^= 1; return b })},
		{"flipped token id", "SHA-256 mismatch", damage(func(b []byte) []byte { b[versionAt+4+4+len(testKVKey)+4+3+12] ^= 1; return b })},
		{"flipped hash", "SHA-256 mismatch", damage(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b })},
		{"truncated", "truncated", good[:len(good)-1]},
		{"truncated to the header", "truncated", good[:versionAt+6]},
		{"truncated to nothing", "truncated", nil},
		{"extra bytes", "7 extra bytes", damage(func(b []byte) []byte { return rehash(append(b, make([]byte, 7)...)) })},
		{"extra bytes, hash unchanged", "extra bytes", append(append([]byte(nil), good...), 1, 2, 3)},
		{"wrong magic", "wrong magic", damage(func(b []byte) []byte { b[0] = 'X'; return rehash(b) })},
		{"wrong version", "format version 2", damage(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[versionAt:], 2)
			return rehash(b)
		})},
		{"huge key length", "truncated in the key", damage(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[versionAt+4:], 1<<31)
			return b
		})},
		{"unknown dtype", "unknown dtype", damage(func(b []byte) []byte {
			b[versionAt+4+4+len(testKVKey)+4] = 'x'
			return rehash(b)
		})},
		{"sizes disagree", "truncated", damage(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[versionAt+4+4+len(testKVKey)+4+3+4:], 5) // kv dim 5, not 4
			return rehash(b)
		})},
		{"absurd layers", "out of range", damage(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[versionAt+4+4+len(testKVKey)+4+3:], 1<<30)
			return rehash(b)
		})},
	}
	for _, tc := range cases {
		_, err := DecodeKV(tc.blob, testKVKey)
		require.ErrorContains(t, err, tc.want, tc.name)
		require.NotContains(t, err.Error(), "\n", tc.name)
	}
	_, err := DecodeKV(good, "tiny/seed2/cpu-f32")
	require.ErrorContains(t, err, "wrong key")
}

func FuzzDecodeKV(f *testing.F) {
	good := EncodeKV(testSnapshot(), testKVKey)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(EncodeKV(&KVSnapshot{DType: "f32", Layers: 1, KVDim: 2, Tokens: []int{5}, K: [][]byte{make([]byte, 8)}, V: [][]byte{make([]byte, 8)}}, testKVKey))
	f.Add(EncodeKV(&KVSnapshot{DType: "f32"}, testKVKey))
	f.Add([]byte("ILMKV"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeKV(b, testKVKey)
		if err != nil {
			return
		}
		// What decodes encodes back to the same blob.
		require.Equal(t, b, EncodeKV(s, testKVKey))
	})
}

// kvRecorder is a CPU decoder that keeps the last row of logits of every Forward.
type kvRecorder struct {
	*CPU
	logits [][]float32
}

func (r *kvRecorder) Forward(tokens []int, pos int, all bool) ([][]float32, error) {
	out, err := r.CPU.Forward(tokens, pos, all)
	if err == nil {
		r.logits = append(r.logits, append([]float32(nil), out[len(out)-1]...))
	}
	return out, err
}

// A system prompt's cache, snapshotted, encoded, decoded and restored into a fresh decoder, answers
// exactly as a fresh decoder that prefilled it.
func TestSessionSnapshotRestoreCPU(t *testing.T) {
	m := tinyModel(t)
	system := m.Chat.Encode([]Message{{Role: "system", Content: "You are a terse assistant."}}, false)
	prompt := m.Chat.Encode([]Message{{Role: "system", Content: "You are a terse assistant."}, {Role: "user", Content: "Name a colour."}}, true)
	n := len(system)
	require.Equal(t, system, prompt[:n])
	opt := GenerateOptions{MaxTokens: 8, Sampling: Greedy()}
	nop := func(int) error { return nil }
	ctx := context.Background()
	newRec := func() *kvRecorder { return &kvRecorder{CPU: NewCPU(m.Config, m.Weights, 128)} }

	// The source prefills the whole prompt and answers; its cache's first n positions are the system prompt's.
	src := NewSession(newRec(), m.Config)
	_, err := src.Generate(ctx, prompt, opt, nop)
	require.NoError(t, err)
	snap, err := src.Snapshot(n)
	require.NoError(t, err)
	require.Equal(t, system, snap.Tokens)
	require.Equal(t, "f32", snap.DType)
	blob := EncodeKV(snap, testKVKey)
	snap, err = DecodeKV(blob, testKVKey)
	require.NoError(t, err)

	restoredDec := newRec()
	restored := NewSession(restoredDec, m.Config)
	require.NoError(t, restored.Restore(snap))
	got, err := restored.Generate(ctx, prompt, opt, nop)
	require.NoError(t, err)
	require.Equal(t, len(prompt)-n, got.Prefilled)

	// A fresh decoder that prefilled the system prompt, then the prompt's rest, as the restored one does.
	freshDec := newRec()
	fresh := NewSession(freshDec, m.Config)
	_, err = fresh.Generate(ctx, system, GenerateOptions{MaxTokens: 1, Sampling: Greedy()}, nop)
	require.NoError(t, err)
	freshDec.logits = nil
	want, err := fresh.Generate(ctx, prompt, opt, nop)
	require.NoError(t, err)
	require.Equal(t, len(prompt)-n, want.Prefilled)
	require.Equal(t, want.Tokens, got.Tokens)
	require.Equal(t, freshDec.logits, restoredDec.logits, "logits must be bit-identical")

	// A fresh decoder that prefilled the whole prompt at once.
	wholeDec := newRec()
	whole, err := NewSession(wholeDec, m.Config).Generate(ctx, prompt, opt, nop)
	require.NoError(t, err)
	require.Equal(t, whole.Tokens, got.Tokens)
	require.Equal(t, wholeDec.logits, restoredDec.logits, "logits must be bit-identical to a prefill of the whole prompt")
}

func TestImportKVRejectsMismatch(t *testing.T) {
	m := tinyModel(t)
	cpu := NewCPU(m.Config, m.Weights, 16)
	s, err := cpu.ExportKV([]int{1, 2, 3})
	require.NoError(t, err)
	require.NoError(t, cpu.ImportKV(s))

	bad := *s
	bad.DType = "f16"
	require.ErrorContains(t, cpu.ImportKV(&bad), "dtype")
	bad = *s
	bad.Layers++
	require.ErrorContains(t, cpu.ImportKV(&bad), "layers")
	bad = *s
	bad.KVDim *= 2
	require.ErrorContains(t, cpu.ImportKV(&bad), "kv dim")
	bad = *s
	bad.Tokens = make([]int, 17)
	require.ErrorContains(t, cpu.ImportKV(&bad), "context length 16")
	bad = *s
	bad.Tokens = []int{1, 2}
	require.ErrorContains(t, cpu.ImportKV(&bad), "bytes")
	bad = *s
	bad.Tokens = []int{1, 2, m.Config.VocabSize}
	require.ErrorContains(t, cpu.ImportKV(&bad), "outside vocab")
	_, err = cpu.ExportKV(make([]int, 17))
	require.ErrorContains(t, err, "context length 16")

	sess := NewSession(cpu, m.Config)
	_, err = sess.Snapshot(1)
	require.ErrorContains(t, err, "0 cached")
	_, err = NewSession(&recordingDecoder{Decoder: cpu}, m.Config).Snapshot(0)
	require.ErrorContains(t, err, "cannot export")
}
