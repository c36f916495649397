package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxEntry bounds a cache file: an entry is a token (a few KiB) and a URL.
const maxEntry = 1 << 20

// An Entry is one cached credential.
type Entry struct {
	// URL is the server URL the credential is for (the file name is its
	// hash, so the URL is kept to tell a person which file is which).
	URL string `json:"url"`
	// Token is the raw JWT the server issued.
	Token string `json:"token"`
	// Expiry is the token's exp.
	Expiry time.Time `json:"expiry"`
	// Obtained is when the sign-in or renewal that produced the token
	// finished.
	Obtained time.Time `json:"obtained"`
	// Renewal is the credential that renews the token without a browser,
	// good once; "" if the server gave none.
	Renewal string `json:"renewal,omitempty"`
}

// A Cache is a directory of entries.
type Cache struct {
	dir string
}

// DefaultDir is os.UserCacheDir()/portcullis-cli/exec-credential.
func DefaultDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory: %w (set XDG_CACHE_HOME or HOME)", err)
	}
	return filepath.Join(d, "portcullis-cli", "exec-credential"), nil
}

// New returns the cache kept in dir. Nothing is created until a Store or
// a Lock.
func New(dir string) *Cache { return &Cache{dir: dir} }

// Path is the file that holds the entry for url.
func (c *Cache) Path(url string) string { return filepath.Join(c.dir, key(url)+".json") }

func (c *Cache) lockPath(url string) string { return filepath.Join(c.dir, key(url)+".lock") }

// key names a URL's files: hex SHA-256 of the URL, so any URL makes a
// safe file name of fixed length.
func key(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:])
}

// Load returns the entry for url, or nil and no error if there is none.
// A file that cannot be parsed, or that belongs to another URL, is
// reported as ErrCorrupt; callers treat it as absent and overwrite it.
func (c *Cache) Load(url string) (*Entry, error) {
	path := c.Path(url)
	f, err := openEntry(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading cached credential: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEntry+1))
	if err != nil {
		return nil, fmt.Errorf("reading cached credential %s: %w", path, err)
	}
	if len(b) > maxEntry {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, path, maxEntry)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	if e.URL != url || e.Token == "" {
		return nil, fmt.Errorf("%w: %s is not a credential for %s", ErrCorrupt, path, url)
	}
	return &e, nil
}

// ErrCorrupt marks a cache file that is not a valid entry for its URL.
var ErrCorrupt = errors.New("corrupt credential cache file")

// Store writes e as the entry for e.URL, atomically: the data goes to a
// temporary file in the same directory (created 0600), is synced, and is
// renamed over the old file. A reader, or a crash, never sees a partial
// entry.
func (c *Cache) Store(e Entry) error {
	if e.URL == "" || e.Token == "" {
		return errors.New("caching credential: no URL or token")
	}
	if err := c.ensureDir(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("caching credential: %w", err)
	}
	return c.writeFile(c.Path(e.URL), key(e.URL), append(b, '\n'), true)
}

// writeFile replaces the file path atomically: the data goes to a
// temporary file in the same directory (created 0600), synced if durable,
// and is renamed over the old file.
func (c *Cache) writeFile(path, k string, data []byte, durable bool) error {
	// os.CreateTemp opens with O_EXCL and mode 0600.
	tmp, err := os.CreateTemp(c.dir, ".tmp-"+k[:16]+"-*")
	if err != nil {
		return fmt.Errorf("caching credential: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("caching credential: writing %s: %w", tmp.Name(), err)
	}
	// Chmod by handle as well: CreateTemp's 0600 does not depend on the
	// umask, but be explicit about what a credential file must be.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("caching credential: %w", err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("caching credential: syncing %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("caching credential: %w", err)
	}
	if err := replaceFile(tmp.Name(), path); err != nil {
		return fmt.Errorf("caching credential: %w", err)
	}
	ok = true
	if durable {
		// Make the rename durable; failing to is not worth an error.
		if d, err := os.Open(c.dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// givenPath is the file that says which process the entry's token was
// last handed to: beside the entry, not in it, so that writing it can
// never put back an entry another process has just replaced (with a
// renewal credential that is spent).
func (c *Cache) givenPath(url string) string { return filepath.Join(c.dir, key(url)+".given") }

// MarkGiven records that token, the entry's for url, was handed to the
// process caller. It is a hint, not a credential: it holds the token's
// hash only.
func (c *Cache) MarkGiven(url string, caller int, token string) error {
	if err := c.ensureDir(); err != nil {
		return err
	}
	return c.writeFile(c.givenPath(url), key(url), []byte(strconv.Itoa(caller)+" "+tokenHash(token)+"\n"), false)
}

// GivenTo returns the process token was last handed to (MarkGiven), or 0.
func (c *Cache) GivenTo(url, token string) int {
	b, err := os.ReadFile(c.givenPath(url))
	if err != nil {
		return 0
	}
	pid, hash, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || hash != tokenHash(token) {
		return 0
	}
	n, _ := strconv.Atoi(pid)
	return n
}

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:16])
}

// Delete removes the entry for url; no entry is not an error. The lock
// file stays: another process may hold it, and a new file under the same
// name would let a third process lock while the second still does.
func (c *Cache) Delete(url string) error {
	if err := os.Remove(c.Path(url)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing cached credential: %w", err)
	}
	return nil
}

// Entries returns every entry that can be read, for finding a session
// another route's sign-in left (broker). Unreadable files are skipped.
func (c *Cache) Entries() ([]Entry, error) {
	names, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading cached credentials: %w", err)
	}
	var out []Entry
	for _, de := range names {
		name := de.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		// The file names its URL; Load checks the rest, and that the file
		// is that URL's.
		b, err := os.ReadFile(filepath.Join(c.dir, name))
		var named struct{ URL string }
		if err != nil || len(b) > maxEntry || json.Unmarshal(b, &named) != nil || key(named.URL)+".json" != name {
			continue
		}
		if e, err := c.Load(named.URL); err == nil && e != nil {
			out = append(out, *e)
		}
	}
	return out, nil
}

// DeleteAll removes every entry (and stray temporary files) and returns
// how many entries there were.
func (c *Cache) DeleteAll() (int, error) {
	names, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("removing cached credentials: %w", err)
	}
	n := 0
	var errs []error
	for _, de := range names {
		name := de.Name()
		isEntry := strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".")
		if !isEntry && !strings.HasPrefix(name, ".tmp-") && !strings.HasSuffix(name, ".given") {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if isEntry {
			n++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("removing cached credentials: %w", err)
	}
	return n, nil
}

// ensureDir creates the cache directory 0700 (and its parent
// portcullis-cli directory 0700), and tightens it if it exists with
// wider permissions: the files in it are credentials.
func (c *Cache) ensureDir() error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("creating credential cache directory: %w", err)
	}
	fi, err := os.Stat(c.dir)
	if err != nil {
		return fmt.Errorf("creating credential cache directory: %w", err)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(c.dir, 0o700); err != nil {
			return fmt.Errorf("restricting credential cache directory %s to its owner: %w", c.dir, err)
		}
	}
	return nil
}
