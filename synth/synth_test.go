package synth

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/safetensors"
)

// The committed goldens (testdata/golden/tiny) were computed from `synth -preset tiny -seed 1`: its bytes
// must not drift, or the goldens no longer describe the checkpoint the tests build.
func TestTinyMatchesGoldenChecksums(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	require.NoError(t, Write(Presets["tiny"], dir, 1))
	f, err := os.Open("../testdata/golden/tiny/checkpoint.sha256")
	require.NoError(t, err)
	defer f.Close()
	lines := bufio.NewScanner(f)
	n := 0
	for lines.Scan() {
		sum, name, ok := strings.Cut(lines.Text(), "  ")
		require.True(t, ok)
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		got := sha256.Sum256(data)
		require.Equal(t, sum, hex.EncodeToString(got[:]), name)
		n++
	}
	require.Equal(t, 4, n)

	ckpt, err := safetensors.OpenDir(dir)
	require.NoError(t, err)
	defer ckpt.Close()
	require.Len(t, ckpt.Names(), 3+9*2)
}

func TestFullSizeParameterCount(t *testing.T) {
	var params int64
	for _, ts := range Presets["internlm3-8b"].split() {
		for _, tensor := range ts {
			params += elements(tensor.shape)
		}
	}
	require.Equal(t, int64(8_804_241_408), params, "MODEL.md's parameter count")
	require.Len(t, Presets["internlm3-8b"].split(), 5, "about 4 GiB per file, like the real checkpoint")
}

func TestWriteRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644))
	require.ErrorContains(t, Write(Presets["tiny"], dir, 1), "not empty")
	_, err := os.Stat(filepath.Join(dir, "keep"))
	require.NoError(t, err)
}

// The full-size preset's tokenizer covers its 128,512-id vocabulary, so that whatever the random model
// emits decodes to text: every id past the tiny tokenizer's is a piece that decodes to something visible,
// and text still round-trips. The tiny preset keeps the tiny tokenizer byte for byte.
func TestTokenizerCoversVocab(t *testing.T) {
	tiny, err := tokenizerModel(Presets["tiny"].VocabSize)
	require.NoError(t, err)
	require.Equal(t, ilmweb.TinyTokenizerModel, tiny)

	p := Presets["internlm3-8b"]
	data, err := tokenizerModel(p.VocabSize)
	require.NoError(t, err)
	tok, err := model.NewTokenizer("tokenizer.model", data, "tokenizer_config.json", ilmweb.TinyTokenizerConfig)
	require.NoError(t, err)
	require.Equal(t, p.VocabSize, tok.VocabSize())
	small, err := model.NewTokenizer("tokenizer.model", tiny, "tokenizer_config.json", ilmweb.TinyTokenizerConfig)
	require.NoError(t, err)
	for id := small.VocabSize(); id < tok.VocabSize(); id++ {
		text := tok.Decode([]int{id})
		require.NotEmpty(t, strings.TrimSpace(text), "id %d", id)
		require.NotContains(t, text, "\uFFFD", "id %d", id)
	}
	for _, s := range []string{"Hello, world! The quick brown fox.", "你好，世界", "func main() {\n\tfmt.Println(42)\n}"} {
		ids := tok.Encode(s)
		require.Equal(t, s, tok.Decode(ids))
		for _, id := range ids {
			require.Less(t, id, p.VocabSize)
		}
	}
	require.Less(t, len(tok.Encode("The quick brown fox jumps over the lazy dog.")),
		len(small.Encode("The quick brown fox jumps over the lazy dog.")), "the new pieces merge like BPE pieces")
}
