// Package safefile opens and reads the files of a model directory defensively: only regular files, and a
// whole-file read only within a size cap that fits the file's kind. A source directory comes from wherever
// the user downloaded it: a tokenizer.model symlinked to /dev/zero must fail at once instead of filling
// memory, and a config.json that is a named pipe must fail instead of blocking forever.
package safefile

import (
	"fmt"
	"io"
	"os"
)

// Open opens path for reading if it is a regular file (following symlinks). It never blocks on a named
// pipe: the type is checked before the open, and again on the open file, which on Unix is opened
// non-blocking so that a pipe swapped in between cannot block either.
func Open(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regular(path, st); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	if st, err = f.Stat(); err == nil {
		err = regular(path, st)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the regular file path whole, refusing one of more than limit bytes (also one that grows
// past limit while it is read).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d bytes for this file", path, st.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew past the limit of %d bytes for this file while it was read", path, limit)
	}
	return data, nil
}

func regular(path string, st os.FileInfo) error {
	if st.Mode().IsRegular() {
		return nil
	}
	kind := "not a regular file"
	switch m := st.Mode(); {
	case m.IsDir():
		kind = "a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a named pipe"
	case m&os.ModeCharDevice != 0:
		kind = "a character device"
	case m&os.ModeDevice != 0:
		kind = "a device"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	}
	return fmt.Errorf("%s is %s, not a regular file", path, kind)
}
