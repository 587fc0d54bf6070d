//go:build js || wasip1

package safetensors

import (
	"fmt"

	"github.com/ilmweb/ilmweb/internal/safefile"
)

// Open reads and validates a safetensors file. Without mmap (js/wasip1) the
// whole file is read into memory.
func Open(path string) (*File, error) {
	data, err := safefile.ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return newFile(path, data, int64(len(data)), nil)
}
