//go:build !unix

package cache

import "context"

// Lock is a no-op where flock(2) does not exist: concurrent kubectl
// processes may then each sign in. The cache itself still works.
func (c *Cache) Lock(ctx context.Context, url string, waiting func()) (unlock func(), err error) {
	if err := c.ensureDir(); err != nil {
		return nil, err
	}
	return func() {}, nil
}
