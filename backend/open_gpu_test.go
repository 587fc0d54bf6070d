package backend

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
	"github.com/ilmweb/ilmweb/webgpu"
)

// Open("gpu") gives the same greedy tokens as Open("cpu"), and each GPU backend opened in turn (as the
// server and the tools do, one device each) works.
func TestOpenGPUMatchesCPU(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	require.NoError(t, synth.Write(synth.Presets["tiny"], dir, 1))
	m, err := model.Load(dir)
	require.NoError(t, err)
	prompt := []int{1, 5, 9, 200, 17, 3}

	cpu, err := Open("cpu", m, 64)
	require.NoError(t, err)
	want := greedy(t, cpu, m, prompt)

	for range 3 {
		gpu, err := Open("gpu", m, 64)
		if errors.Is(err, webgpu.ErrNoAdapter) && os.Getenv("REQUIRE_GPU") != "1" {
			t.Skip(err)
		}
		require.NoError(t, err)
		t.Logf("backend: %s", gpu.Name)
		defer gpu.Close()
		require.Equal(t, want, greedy(t, gpu, m, prompt))
	}
}

func greedy(t *testing.T, b *Backend, m *model.Model, prompt []int) []int {
	t.Helper()
	res, err := model.NewSession(b, m.Config).Generate(t.Context(), prompt,
		model.GenerateOptions{MaxTokens: 16, Sampling: model.Greedy()}, func(int) error { return nil })
	require.NoError(t, err)
	return res.Tokens
}
