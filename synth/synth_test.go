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
