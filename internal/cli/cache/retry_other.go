//go:build !windows

package cache

import "os"

// openEntry and replaceFile are os.Open and os.Rename: elsewhere than on
// Windows, a rename replaces a file that others have open, and an open
// never fails for a rename under way.
func openEntry(path string) (*os.File, error) { return os.Open(path) }

func replaceFile(from, to string) error { return os.Rename(from, to) }
