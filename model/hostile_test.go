//go:build unix

package model

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// within fails the test if fn does not return in time: a named pipe must fail fast, never block.
func within(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("still blocked after 20 s")
		return nil
	}
}

func TestLoadersRefuseWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "config.json"), 0o644))
	err := within(t, func() error { _, err := LoadConfig(filepath.Join(dir, "config.json")); return err })
	require.ErrorContains(t, err, "config.json is a named pipe, not a regular file")

	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "tokenizer.model")))
	err = within(t, func() error { _, err := LoadTokenizer(dir); return err })
	require.ErrorContains(t, err, "tokenizer.model is a character device, not a regular file")

	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, ManifestFile), 0o644))
	err = within(t, func() error { _, _, _, err := OpenConverted(dir); return err })
	require.ErrorContains(t, err, "manifest.json is a named pipe, not a regular file")
}

func TestLoadersCapFileSizes(t *testing.T) {
	dir := t.TempDir()
	for name, limit := range map[string]int64{"tokenizer.model": MaxTokenizerModelBytes, "tokenizer_config.json": MaxTokenizerConfigBytes} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
		require.NoError(t, os.Truncate(filepath.Join(dir, name), limit+1)) // sparse
	}
	_, err := LoadTokenizer(dir)
	require.ErrorContains(t, err, "tokenizer.model is 33554433 bytes, over the limit of 33554432 bytes")
	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), nil, 0o644))
	require.NoError(t, os.Truncate(filepath.Join(dir, ManifestFile), MaxManifestBytes+1))
	_, _, _, err = OpenConverted(dir)
	require.ErrorContains(t, err, "manifest.json is 16777217 bytes, over the limit of 16777216 bytes")
}
