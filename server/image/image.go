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
//	index.json              image names to their versions' digests (written with fsync + rename)
//
// # Versions
//
// Importing to a name adds a version (NAME@v1, NAME@v2, ...) unless the
// content is that of the latest version already. A version is immutable:
// it names one digest for as long as it exists. A reference is NAME (the
// latest version) or NAME@vN (that version).
//
// # Concurrency
//
// A Store is safe for concurrent use by one process.
package image

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	// Version numbers the name's imports from 1; an index written before
	// versions has each name's image as version 1.
	Version int `json:"version"`
	// Digest is the hex sha256 of the ext4 image.
	Digest string `json:"digest"`
	// Size is the image size in bytes.
	Size int64 `json:"size"`
	// TreeDigest is the hex sha256 of the unpacked tree (names, owners,
	// modes, times, contents).
	TreeDigest string    `json:"tree_digest"`
	Imported   time.Time `json:"imported"`
	// Origin is the digest of the OCI image it was made from, if any.
	Origin string `json:"origin,omitempty"`
}

// Ref is the image's reference with its version: NAME@vN.
func (im Image) Ref() string { return fmt.Sprintf("%s@v%d", im.Name, im.Version) }

// ParseRef splits a reference, NAME or NAME@vN, into the name and the
// version (0 for NAME: the latest).
func ParseRef(ref string) (name string, version int, err error) {
	name, v, pinned := strings.Cut(ref, "@")
	if pinned {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "v"))
		if err != nil || !strings.HasPrefix(v, "v") || n < 1 || strconv.Itoa(n) != v[1:] {
			return "", 0, fmt.Errorf("image: reference %q: %w: want NAME or NAME@vN", ref, ErrBadName)
		}
		version = n
	}
	if !namePattern.MatchString(name) {
		return "", 0, fmt.Errorf("image: reference %q: %w", ref, ErrBadName)
	}
	return name, version, nil
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

// List returns every version of every named image, sorted by name and
// version.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, name := range slices.Sorted(maps.Keys(idx.Versions)) {
		out = append(out, idx.Versions[name]...)
	}
	return out, nil
}

// Get returns the image ref (NAME or NAME@vN) names.
func (s *Store) Get(ref string) (*Image, error) { return s.Resolve(ref, "") }

// Resolve returns the image a root made on base (a digest, "" for none
// yet) mounts when its plan names ref: a root keeps its base while that
// is a version of ref's name, whatever version ref pins or is latest, so
// importing or pinning a version never changes an existing root's base
// (an explicit upgrade does). Otherwise it is Get(ref).
func (s *Store) Resolve(ref, base string) (*Image, error) {
	name, version, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	for _, im := range idx.Versions[name] {
		if base != "" && im.Digest == base {
			return &im, nil
		}
	}
	return idx.find(name, version)
}

// Remove forgets ref: one version (NAME@vN) or every version of a name
// (NAME). It returns what it removed. Bases stay until GC finds them
// unreferenced; version numbers are never reused.
func (s *Store) Remove(ref string) ([]Image, error) {
	name, version, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	if _, err := idx.find(name, version); err != nil {
		return nil, err
	}
	var kept, removed []Image
	for _, im := range idx.Versions[name] {
		if version == 0 || im.Version == version {
			removed = append(removed, im)
		} else {
			kept = append(kept, im)
		}
	}
	if len(kept) == 0 {
		delete(idx.Versions, name)
	} else {
		idx.Versions[name] = kept
	}
	idx.setLast(name, removed[len(removed)-1].Version)
	return removed, s.writeIndex(idx)
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
	for _, vs := range idx.Versions {
		for _, im := range vs {
			named[im.Digest] = true
		}
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
