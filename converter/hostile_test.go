//go:build unix

package converter

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/safetensors"
)

// convertWithin runs Convert and fails the test if it does not return in time: a source that is a device,
// a named pipe or a huge file must fail fast, never hang or fill memory.
func convertWithin(t *testing.T, ctx context.Context, src string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Convert(ctx, src, filepath.Join(t.TempDir(), "out"), Options{Workers: 1})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Convert still running after 60 s")
		return nil
	}
}

func TestConvertRefusesSourcesThatAreNotRegularFiles(t *testing.T) {
	const shard = "model-00001-of-00003.safetensors"
	for _, name := range []string{"config.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json",
		safetensors.IndexFile, shard} {
		for kind, make := range map[string]func(path string) error{
			"a character device": func(path string) error { return os.Symlink("/dev/zero", path) },
			"a named pipe":       func(path string) error { return syscall.Mkfifo(path, 0o644) },
		} {
			t.Run(name+" is "+kind, func(t *testing.T) {
				src := tinyHF(t)
				path := filepath.Join(src, name)
				require.NoError(t, os.Remove(path))
				require.NoError(t, make(path))
				err := convertWithin(t, context.Background(), src)
				require.ErrorContains(t, err, path+" is "+kind+", not a regular file")
			})
		}
	}
}

func TestConvertCapsSourceFileSizes(t *testing.T) {
	for name, limit := range map[string]int64{
		"config.json":                      model.MaxJSONFileBytes,
		"generation_config.json":           model.MaxJSONFileBytes,
		"tokenizer.model":                  model.MaxTokenizerModelBytes,
		"tokenizer_config.json":            model.MaxTokenizerConfigBytes,
		safetensors.IndexFile:              safetensors.MaxIndexSize,
		"model-00001-of-00003.safetensors": safetensors.MaxFileSize,
	} {
		t.Run(name, func(t *testing.T) {
			src := tinyHF(t)
			path := filepath.Join(src, name)
			require.NoError(t, os.Truncate(path, limit+1)) // sparse: no disk used
			err := convertWithin(t, context.Background(), src)
			require.ErrorContains(t, err, path)
			require.Regexp(t, `over the limit of \d+`, err.Error())
		})
	}
}

func TestConvertHonoursCancellationBeforeReading(t *testing.T) {
	src := tinyHF(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // what SIGTERM does through signal.NotifyContext in cmd/convert
	require.ErrorIs(t, convertWithin(t, ctx, src), context.Canceled)
}
