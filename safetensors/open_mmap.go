//go:build !js && !wasip1

package safetensors

import (
	"fmt"

	"github.com/edsrzf/mmap-go"

	"github.com/ilmweb/ilmweb/internal/safefile"
)

// Open opens, memory-maps (read-only) and validates a safetensors file.
func Open(path string) (*File, error) {
	fh, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	if size > MaxFileSize {
		return nil, errf(path, "", "file of %d bytes is over the limit of %d", size, MaxFileSize)
	}
	if size < 8 { // mmap cannot map an empty file; let ParseHeader word the error
		var buf [8]byte
		n, _ := fh.ReadAt(buf[:], 0)
		_, err := ParseHeader(path, buf[:n], int64(n))
		return nil, err
	}
	if int64(int(size)) != size {
		return nil, errf(path, "", "file of %d bytes is too large to map", size)
	}
	m, err := mmap.Map(fh, mmap.RDONLY, 0)
	if err != nil {
		return nil, errf(path, "", "mmap: %v", err)
	}
	f, err := newFile(path, m, size, m.Unmap)
	if err != nil {
		m.Unmap()
		return nil, err
	}
	return f, nil
}
