//go:build !unix

package converter

import "os"

// lock creates path. Without flock a conversion cannot tell a dead one's directory from a running one's,
// so tryLock never succeeds and nothing is deleted.
func lock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
}

func tryLock(string) (func(), bool) { return nil, false }
