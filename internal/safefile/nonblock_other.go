//go:build !unix

package safefile

// nonBlock is not needed where named pipes cannot be opened through the file system (js, wasip1) and
// does not exist on Windows, whose pipes live outside it.
const nonBlock = 0
