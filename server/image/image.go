// Package image is sealroot's store of content-addressed base images.
//
// Import unpacks a directory tree or a tar archive (optionally gzipped)
// safely into a private directory, builds an ext4 image of it with
// mkfs.ext4 -d (no root privileges needed) and names it by the sha256 of
// the image. The build is reproducible: the same tree gives the same image
// and so the same digest, whether it came from a directory or a tar.
//
// # Layout
//
//	bases/sha256-<hex>.img  the ext4 image, mode 0444, immutable flag when possible
//	trees/sha256-<hex>/     the unpacked tree, for NFS roots
//	tmp/                    imports in progress (removed at Open)
//	index.json              image names to digests (written with fsync + rename)
//
// # Concurrency
//
// A Store is safe for concurrent use by one process.
package image

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Errors.
var (
	// ErrNotFound means no image has that name, or no base that digest.
	ErrNotFound = errors.New("image not found")
	// ErrUnsafePath means a source entry is absolute, escapes the tree,
	// passes through a symlink, or is a device node outside dev/.
	ErrUnsafePath = errors.New("unsafe path in image source")
	// ErrDigestMismatch means a base's content no longer hashes to its name.
	ErrDigestMismatch = errors.New("base image digest mismatch")
	// ErrBadName means an image name or digest is malformed.
	ErrBadName = errors.New("invalid image name or digest")
)

// Image is a named base image.
type Image struct {
	Name string `json:"name"`
	// Digest is the hex sha256 of the ext4 image.
	Digest string `json:"digest"`
	// Size is the image size in bytes.
	Size int64 `json:"size"`
	// TreeDigest is the hex sha256 of the unpacked tree (names, owners,
	// modes, times, contents).
	TreeDigest string    `json:"tree_digest"`
	Imported   time.Time `json:"imported"`
}

// Config configures a Store. The zero value of each field but Dir works.
type Config struct {
	Dir     string       // required
	Logger  hclog.Logger // default: discard
	Mkfs    string       // default "mkfs.ext4"
	Debugfs string       // default "debugfs"
	E2fsck  string       // default "e2fsck"; checks captured filesystems
	Now     func() time.Time
}

// Store is a directory of base images.
type Store struct {
	dir     string
	log     hclog.Logger
	mkfs    string
	debugfs string
	e2fsck  string
	now     func() time.Time

	mu sync.Mutex // guards index.json
}

var (
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Open opens (creating if needed) the store in cfg.Dir and removes
// leftovers of interrupted imports.
func Open(cfg Config) (*Store, error) {
	s := &Store{dir: cfg.Dir, log: cfg.Logger, mkfs: cfg.Mkfs, debugfs: cfg.Debugfs, e2fsck: cfg.E2fsck, now: cfg.Now}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named("image")
	if s.mkfs == "" {
		s.mkfs = "mkfs.ext4"
	}
	if s.debugfs == "" {
		s.debugfs = "debugfs"
	}
	if s.e2fsck == "" {
		s.e2fsck = "e2fsck"
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := os.RemoveAll(filepath.Join(s.dir, "tmp")); err != nil {
		return nil, fmt.Errorf("image: clean tmp: %w", err)
	}
	for _, d := range []string{"bases", "trees", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image: open store: %w", err)
		}
	}
	return s, nil
}

// BasePath returns the path of the base image with the given digest. It
// fails with ErrNotFound if there is none.
func (s *Store) BasePath(digest string) (string, error) {
	if !digestPattern.MatchString(digest) {
		return "", fmt.Errorf("image: digest %q: %w", digest, ErrBadName)
	}
	p := s.basePath(digest)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("image: base sha256:%s: %w", digest, ErrNotFound)
	}
	return p, nil
}

// TreePath returns the unpacked tree of the base with the given digest.
func (s *Store) TreePath(digest string) (string, error) {
	if _, err := s.BasePath(digest); err != nil {
		return "", err
	}
	return s.treePath(digest), nil
}

func (s *Store) basePath(d string) string { return filepath.Join(s.dir, "bases", "sha256-"+d+".img") }
func (s *Store) treePath(d string) string { return filepath.Join(s.dir, "trees", "sha256-"+d) }

// List returns every named image, sorted by name.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(idx.Images))
	for _, im := range idx.Images {
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the image with the given name.
func (s *Store) Get(name string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	im, ok := idx.Images[name]
	if !ok {
		return nil, fmt.Errorf("image: %q: %w", name, ErrNotFound)
	}
	return &im, nil
}

// Remove forgets a name. The base stays until GC finds it unreferenced.
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if _, ok := idx.Images[name]; !ok {
		return fmt.Errorf("image: %q: %w", name, ErrNotFound)
	}
	delete(idx.Images, name)
	return s.writeIndex(idx)
}

// GC deletes every base and tree that no image name references and for
// which inUse (e.g. "does a machine's overlay record this digest") reports
// false. It returns the deleted digests.
func (s *Store) GC(inUse func(digest string) bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, im := range idx.Images {
		named[im.Digest] = true
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, "bases"))
	if err != nil {
		return nil, fmt.Errorf("image: gc: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		var d string
		if n, _ := fmt.Sscanf(e.Name(), "sha256-%64s", &d); n != 1 || !digestPattern.MatchString(d[:min(len(d), 64)]) {
			continue
		}
		d = d[:64]
		if named[d] || (inUse != nil && inUse(d)) {
			continue
		}
		setImmutable(s.basePath(d), false)
		if err := errors.Join(os.Remove(s.basePath(d)), os.RemoveAll(s.treePath(d))); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("removed unreferenced base", "digest", d)
		removed = append(removed, d)
	}
	return removed, errors.Join(errs...)
}

// Verify re-hashes the base with the given digest.
func (s *Store) Verify(digest string) error {
	p, err := s.BasePath(digest)
	if err != nil {
		return err
	}
	got, err := fileDigest(p)
	if err != nil {
		return err
	}
	if got != digest {
		return fmt.Errorf("image: base sha256:%s hashes to sha256:%s: %w", digest, got, ErrDigestMismatch)
	}
	return nil
}

// DigestBytes decodes a hex digest.
func DigestBytes(digest string) ([32]byte, error) {
	var d [32]byte
	if !digestPattern.MatchString(digest) {
		return d, fmt.Errorf("image: digest %q: %w", digest, ErrBadName)
	}
	hex.Decode(d[:], []byte(digest))
	return d, nil
}
