//go:build !js

package webgpu

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
)

// The autotune's choices natively: one JSON file of Kernels by key in the user cache dir
// ($XDG_CACHE_HOME/ilmweb/autotune.json on Linux).
func tuningFile() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "ilmweb", "autotune.json"), nil
}

func readTunings() map[string]Kernels {
	all := map[string]Kernels{}
	if path, err := tuningFile(); err == nil {
		if raw, err := os.ReadFile(path); err == nil {
			_ = json.Unmarshal(raw, &all) // a damaged file is measured over
		}
	}
	return all
}

func loadTuning(key string) (Kernels, bool) {
	k, ok := readTunings()[key]
	return k, ok
}

// saveTuning adds key's choice to the file, written whole to a temporary file and renamed into place so
// that a reader never sees half of it.
func saveTuning(key string, k Kernels) {
	path, err := tuningFile()
	if err != nil {
		return
	}
	all := readTunings()
	all[key] = k
	raw, err := json.MarshalIndent(all, "", "  ")
	if err != nil || os.MkdirAll(filepath.Dir(path), 0o755) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "autotune-*.json")
	if err != nil {
		return
	}
	_, err = tmp.Write(raw)
	if err = errors.Join(err, tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
}
