package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// MaxBaseSize bounds a base received from a peer (1 TiB).
const MaxBaseSize int64 = 1 << 40

// Errors of Receive and AddVersion.
var (
	// ErrBaseSize means a received base is larger than announced or than
	// MaxBaseSize, or shorter than announced.
	ErrBaseSize = errors.New("base image size wrong or too large")
	// ErrVersionConflict means a version received from a peer names
	// another digest than the version of that number here.
	ErrVersionConflict = errors.New("image version names another base here")
)

// Has reports whether the store holds the base with the given digest.
func (s *Store) Has(digest string) bool {
	_, err := s.BasePath(digest)
	return err == nil
}

// Receive stores the base with the given digest from r, which must hold
// exactly size bytes (at most MaxBaseSize). The bytes go to a file in
// tmp/ (all-zero chunks stay holes) while they are hashed; only when
// their sha256 is digest does the base, with its tree read out of it
// (see dumpTree), move into bases/ and trees/ by rename. On any failure
// (ErrDigestMismatch, ErrBaseSize, a read error, ctx ending) nothing is
// left behind. A base already held is kept and r is not read.
func (s *Store) Receive(ctx context.Context, digest string, size int64, r io.Reader) error {
	if !digestPattern.MatchString(digest) {
		return fmt.Errorf("image: digest %q: %w", digest, ErrBadName)
	}
	if size < 0 || size > MaxBaseSize {
		return fmt.Errorf("image: receive sha256:%s: %d bytes announced, at most %d: %w", digest, size, MaxBaseSize, ErrBaseSize)
	}
	if s.Has(digest) {
		return nil
	}
	work, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "receive-")
	if err != nil {
		return fmt.Errorf("image: receive: %w", err)
	}
	defer os.RemoveAll(work)
	img := filepath.Join(work, "image.img")
	got, err := writeHashed(ctx, img, size, r)
	if err != nil {
		return fmt.Errorf("image: receive sha256:%s: %w", digest, err)
	}
	if got != digest {
		return fmt.Errorf("image: receive sha256:%s: the bytes hash to sha256:%s: %w", digest, got, ErrDigestMismatch)
	}
	tree := filepath.Join(work, "tree")
	if err := s.dumpTree(ctx, img, tree); err != nil {
		return fmt.Errorf("image: receive sha256:%s: %w", digest, err)
	}
	if err := s.install(digest, img, tree); err != nil {
		return err
	}
	s.log.Info("received base", "digest", digest, "size", size)
	return nil
}

// writeHashed copies exactly size bytes of r into a new file at path,
// sparsely, and returns their hex sha256.
func writeHashed(ctx context.Context, path string, size int64, r io.Reader) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return "", err
	}
	h := sha256.New()
	buf := make([]byte, captureChunk)
	for off := int64(0); off < size; off += captureChunk {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := int(min(captureChunk, size-off))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return "", fmt.Errorf("ended before %d bytes: %w", size, ErrBaseSize)
			}
			return "", err
		}
		h.Write(buf[:n])
		if allZero(buf[:n]) {
			continue
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return "", err
		}
	}
	if n, _ := io.ReadFull(r, buf[:1]); n > 0 {
		return "", fmt.Errorf("more than %d bytes: %w", size, ErrBaseSize)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// AddVersion records im, a version another server holds, under its own
// name and version number, so that NAME@vN names the same base on every
// server that has it. The base must be here already (Receive). A version
// of that number naming the same digest is returned as it is; one naming
// another digest fails with ErrVersionConflict.
func (s *Store) AddVersion(im Image) (*Image, error) {
	if !namePattern.MatchString(im.Name) || im.Version < 1 {
		return nil, fmt.Errorf("image: version %s: %w", im.Ref(), ErrBadName)
	}
	if !s.Has(im.Digest) {
		return nil, fmt.Errorf("image: version %s: base sha256:%s: %w", im.Ref(), im.Digest, ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	if have, err := idx.find(im.Name, im.Version); err == nil {
		if have.Digest != im.Digest {
			return nil, fmt.Errorf("image: %s is sha256:%s here, sha256:%s on the peer (imported separately; remove one): %w",
				im.Ref(), have.Digest, im.Digest, ErrVersionConflict)
		}
		return have, nil
	}
	vs := append(idx.Versions[im.Name], im)
	slices.SortFunc(vs, func(a, b Image) int { return a.Version - b.Version })
	idx.Versions[im.Name] = vs
	idx.setLast(im.Name, im.Version)
	if err := s.writeIndex(idx); err != nil {
		return nil, err
	}
	s.log.Info("added image version from a peer", "image", im.Ref(), "digest", im.Digest)
	return &im, nil
}
