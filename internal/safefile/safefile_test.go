//go:build unix

package safefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// within fails the test if fn does not return in time: the cases below must fail fast, never hang.
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

func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	zero := filepath.Join(dir, "tokenizer.model")
	require.NoError(t, os.Symlink("/dev/zero", zero))
	fifo := filepath.Join(dir, "config.json")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))

	for path, want := range map[string]string{
		zero: zero + " is a character device, not a regular file",
		fifo: fifo + " is a named pipe, not a regular file",
		dir:  dir + " is a directory, not a regular file",
	} {
		err := within(t, func() error { _, err := ReadFile(path, 1<<20); return err })
		assert.EqualError(t, err, want)
	}
}

func TestReadFileCapsTheSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(path, make([]byte, 1001), 0o644))
	_, err := ReadFile(path, 1000)
	assert.EqualError(t, err, path+" is 1001 bytes, over the limit of 1000 bytes for this file")
	data, err := ReadFile(path, 1001)
	require.NoError(t, err)
	assert.Len(t, data, 1001)
}
