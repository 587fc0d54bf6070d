package converter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ilmweb/ilmweb/internal/safefile"
	"github.com/ilmweb/ilmweb/model"
)

// Verify checks a converted directory: it parses the manifest, then re-hashes every file and shard it
// lists. The error names every file that is missing or whose size or sha256 differs. progress, if set, is
// called after each file with the bytes checked so far.
func Verify(ctx context.Context, dir string, progress func(done, total int64)) (*model.Manifest, error) {
	manPath := filepath.Join(dir, model.ManifestFile)
	raw, err := safefile.ReadFile(manPath, model.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	man, err := model.ParseManifest(manPath, raw)
	if err != nil {
		return nil, err
	}
	all := append(append([]model.FileEntry{}, man.Files...), man.Shards...)
	var total, done int64
	for _, f := range all {
		total += f.Bytes
	}
	var bad []string
	for _, f := range all {
		path := filepath.Join(dir, f.Name)
		st, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			bad = append(bad, f.Name+" (missing)")
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s (%v)", f.Name, err))
		case st.Size() != f.Bytes:
			bad = append(bad, fmt.Sprintf("%s (%d bytes, want %d)", f.Name, st.Size(), f.Bytes))
		default:
			sum, err := hashFile(ctx, path)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s (%v)", f.Name, err))
			} else if sum != f.SHA256 {
				bad = append(bad, fmt.Sprintf("%s (sha256 %s, want %s)", f.Name, sum, f.SHA256))
			}
		}
		done += f.Bytes
		if progress != nil {
			progress(done, total)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("verify %s: %d of %d files differ from the manifest: %s", dir, len(bad), len(all), strings.Join(bad, ", "))
	}
	return man, nil
}
