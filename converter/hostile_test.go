//go:build unix

package converter

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestMain doubles as the conversion that TestKilledConversionIsCleanedUp kills: with killEnv set, the
// test binary converts and freezes at its first progress report, its temporary directory half written.
const killEnv = "ILMWEB_TEST_CONVERT_THEN_FREEZE"

func TestMain(m *testing.M) {
	if args := os.Getenv(killEnv); args != "" {
		src, dst, _ := strings.Cut(args, "\n")
		Convert(context.Background(), src, dst, Options{Workers: 1, Progress: func(string, int64, int64) {
			fmt.Println("frozen")
			select {}
		}})
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestKilledConversionIsCleanedUp(t *testing.T) {
	src := tinyHF(t)
	parent := t.TempDir()
	dst := filepath.Join(parent, "out")
	tmps := func() []string {
		m, err := filepath.Glob(filepath.Join(parent, ".out.tmp-*"))
		require.NoError(t, err)
		return m
	}

	// A conversion killed with SIGKILL leaves its temporary directory.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killEnv+"="+src+"\n"+dst)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "frozen\n", line)
	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()
	require.Len(t, tmps(), 1)

	// Beside it: a directory of the same pattern whose conversion still runs (its lock is held), one
	// without the lock file (nothing proves it is the converter's), and one of another DST.
	running := filepath.Join(parent, ".out.tmp-running")
	require.NoError(t, os.Mkdir(running, 0o755))
	held, err := lock(filepath.Join(running, lockName))
	require.NoError(t, err)
	defer held.Close()
	unproven := filepath.Join(parent, ".out.tmp-unproven")
	require.NoError(t, os.Mkdir(unproven, 0o755))
	other := filepath.Join(parent, ".other.tmp-1")
	require.NoError(t, os.Mkdir(other, 0o755))
	_, err = lock(filepath.Join(other, lockName))
	require.NoError(t, err)

	// The next conversion to DST deletes the dead one's directory, and only that.
	_, err = Convert(context.Background(), src, dst, Options{Workers: 1})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{running, unproven}, tmps())
	require.DirExists(t, other)
	require.NoFileExists(t, filepath.Join(dst, lockName))
}

func TestFailedConversionRemovesTheParentsItMade(t *testing.T) {
	src := tinyHF(t)
	root := t.TempDir()
	dst := filepath.Join(root, "a", "b", "out")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Convert(ctx, src, dst, Options{Workers: 1, Progress: func(string, int64, int64) { cancel() }})
	require.ErrorIs(t, err, context.Canceled)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Empty(t, entries, "the folders made for %s are left", dst)
}
