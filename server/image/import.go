package image

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// Import unpacks source (a directory, a .tar/.tar.gz archive, or an OCI
// image: docker://REF or oci:PATH, see RegistryPrefix) and
// stores it under name as a content-addressed ext4 base. progress, if not
// nil, is called with bytes of source read so far and the source's size.
// Importing the same content twice yields the same digest. It adds a
// version to name (the first is NAME@v1) unless the content is that of
// name's latest version, which it then returns.
func (s *Store) Import(ctx context.Context, name, source string, progress func(done, total int64)) (*Image, error) {
	if !namePattern.MatchString(name) {
		return nil, fmt.Errorf("image: name %q: %w", name, ErrBadName)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	work, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "import-")
	if err != nil {
		return nil, fmt.Errorf("image: import: %w", err)
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	origin, err := s.unpack(ctx, source, tree, progress)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum, err := summarize(tree)
	if err != nil {
		return nil, err
	}
	img := filepath.Join(work, "image.img")
	if err := s.buildExt4(ctx, tree, img, sum); err != nil {
		return nil, err
	}
	digest, err := fileDigest(img)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(img)
	if err != nil {
		return nil, fmt.Errorf("image: import: %w", err)
	}
	if err := s.install(digest, img, tree); err != nil {
		return nil, err
	}
	im := Image{Name: name, Digest: digest, Size: fi.Size(), TreeDigest: hex.EncodeToString(sum.digest[:]), Imported: s.now().UTC(),
		Origin: origin}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	if latest, err := idx.find(name, 0); err == nil && latest.Digest == digest {
		s.log.Info("image unchanged", "image", latest.Ref(), "digest", digest)
		return latest, nil
	}
	im = idx.add(im)
	if err := s.writeIndex(idx); err != nil {
		return nil, err
	}
	s.log.Info("imported image", "image", im.Ref(), "digest", digest, "size", fi.Size(), "files", sum.inodes, "origin", origin)
	return &im, nil
}

// unpack extracts source into tree. For an OCI source it returns the
// image's digest ("sha256:...").
func (s *Store) unpack(ctx context.Context, source, tree string, progress func(done, total int64)) (origin string, err error) {
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", fmt.Errorf("image: import: %w", err)
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		return "", fmt.Errorf("image: import: %w", err)
	}
	defer root.Close()
	x := &extractor{dir: tree, root: root, symlinks: map[string]bool{}}
	if IsOCI(source) {
		var img v1.Image
		if img, err = ociImage(ctx, source); err != nil {
			return "", err
		}
		x.layered = true
		origin, err = applyLayers(ctx, img, x, progress)
	} else {
		err = walkSource(source, progress, x.add)
	}
	if err != nil {
		return "", err
	}
	if err := x.finish(); err != nil {
		return "", err
	}
	if x.chownErr != nil {
		s.log.Warn("ownership not preserved (not running as root)", "error", x.chownErr)
	}
	return origin, nil
}

// install moves the image and tree to their content-addressed places, read
// only. An existing base with that digest is kept (same content).
func (s *Store) install(digest, img, tree string) error {
	base := s.basePath(digest)
	if _, err := os.Stat(base); err == nil {
		return nil
	}
	f, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("image: install: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err == nil {
		err = os.Chmod(img, 0o444)
	}
	if err == nil {
		os.RemoveAll(s.treePath(digest))
		err = os.Rename(tree, s.treePath(digest))
	}
	if err == nil {
		err = os.Rename(img, base)
	}
	if err == nil {
		err = errors.Join(atomicfile.SyncDir(filepath.Dir(base)), atomicfile.SyncDir(filepath.Dir(s.treePath(digest))))
	}
	if err != nil {
		return fmt.Errorf("image: install: %w", err)
	}
	setImmutable(base, true)
	return nil
}
