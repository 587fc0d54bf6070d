package converter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// A conversion builds its output in a temporary sibling of DST (".DST.tmp-*") holding lockName, locked for
// as long as the conversion runs. A process that is killed (SIGKILL, power loss) cannot delete its
// temporary directory, but the kernel releases its lock: so a later conversion to the same DST deletes
// every such directory whose lock it can take, and nothing else (not a directory without the lock file,
// which it cannot prove is its own; not one whose lock is held, which is in use).
const lockName = ".ilmweb-convert.lock"

func tmpPrefix(dst string) string { return "." + filepath.Base(filepath.Clean(dst)) + ".tmp-" }

// removeStale deletes the temporary directories of dead conversions to dst.
func removeStale(dst string) {
	parent := filepath.Dir(filepath.Clean(dst))
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tmpPrefix(dst)) {
			continue // a symlink is not a directory here: it is never followed
		}
		dir := filepath.Join(parent, e.Name())
		release, ok := tryLock(filepath.Join(dir, lockName))
		if !ok {
			continue
		}
		os.RemoveAll(dir)
		release()
	}
}

// createParents makes dir with its missing parents and returns what undoes that: it removes the ones it
// made, innermost first, as long as they are empty.
func createParents(dir string) (undo func(), err error) {
	var made []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			break
		}
		made = append(made, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return func() {
		for _, d := range made {
			os.Remove(d)
		}
	}, nil
}
