package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// OCI sources. An import source with one of these prefixes is an OCI or
// Docker image, flattened: its layers applied in order, whiteouts
// removing what lower layers put there, under the rules of every import
// (no traversal, no path through a symlink, device nodes only under
// dev/).
const (
	// RegistryPrefix: docker://REGISTRY/REPO[:TAG|@DIGEST], pulled
	// anonymously; plain HTTP only for loopback and private addresses
	// (go-containerregistry's rule).
	RegistryPrefix = "docker://"
	// LayoutPrefix: oci:PATH, an OCI image layout directory or a
	// `docker save` archive (absolute paths on the server).
	LayoutPrefix = "oci:"
)

// IsOCI reports whether source names an OCI image (a prefix above).
func IsOCI(source string) bool {
	return strings.HasPrefix(source, RegistryPrefix) || strings.HasPrefix(source, LayoutPrefix)
}

// ociImage opens the image source names. For a layout with several
// images it takes the first manifest that is an image.
func ociImage(ctx context.Context, source string) (v1.Image, error) {
	if ref, ok := strings.CutPrefix(source, RegistryPrefix); ok {
		r, err := name.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("image: oci reference %q: %w", ref, err)
		}
		img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous))
		if err != nil {
			return nil, fmt.Errorf("image: pull %s: %w", r, err)
		}
		return img, nil
	}
	p := strings.TrimPrefix(source, LayoutPrefix)
	if !filepath.IsAbs(p) {
		return nil, fmt.Errorf("image: oci source %q: want an absolute path", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("image: oci source: %w", err)
	}
	if !fi.IsDir() {
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			return nil, fmt.Errorf("image: oci archive %s (want `docker save` format): %w", p, err)
		}
		return img, nil
	}
	idx, err := layout.ImageIndexFromPath(p)
	if err != nil {
		return nil, fmt.Errorf("image: oci layout %s: %w", p, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("image: oci layout %s: %w", p, err)
	}
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("image: oci layout %s holds no image manifest: %w", p, ErrNotFound)
}

// OCI whiteout names (image-spec layer.md, "Whiteouts").
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// applyLayers extracts img's layers in order into x, which must be
// layered. It returns the image's digest.
func applyLayers(ctx context.Context, img v1.Image, x *extractor, progress func(done, total int64)) (string, error) {
	digest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("image: oci digest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return "", fmt.Errorf("image: oci layers: %w", err)
	}
	var total int64
	for _, l := range layers {
		if n, err := l.Size(); err == nil {
			total += n
		}
	}
	var done int64
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if err := applyLayer(l, x); err != nil {
			return "", fmt.Errorf("image: oci layer %d: %w", i, err)
		}
		if n, err := l.Size(); err == nil {
			done += n
		}
		progress(done, total)
	}
	return digest.String(), nil
}

func applyLayer(l v1.Layer, x *extractor) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		base := path.Base(h.Name)
		if strings.HasPrefix(base, whiteoutPrefix) {
			if err := x.whiteout(h.Name); err != nil {
				return err
			}
			continue
		}
		e, ok := headerEntry(h, tr)
		if !ok {
			continue
		}
		if err := x.add(e); err != nil {
			return err
		}
	}
}

// whiteout applies a whiteout entry: .wh..wh..opq empties its directory,
// .wh.NAME removes NAME.
func (x *extractor) whiteout(entryName string) error {
	n, err := localName(entryName)
	if err != nil {
		return err
	}
	dir, base := path.Dir(n), path.Base(n)
	if err := x.checkParents(n); err != nil {
		return err
	}
	if base == opaqueWhiteout {
		ents, err := x.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := x.removeAll(path.Join(dir, e)); err != nil {
				return fmt.Errorf("image: opaque whiteout %s: %w", dir, err)
			}
		}
		return nil
	}
	target := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
	if target == dir || strings.Contains(strings.TrimPrefix(base, whiteoutPrefix), "/") {
		return fmt.Errorf("image: whiteout %q: %w", entryName, ErrUnsafePath)
	}
	if err := x.removeAll(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image: whiteout %s: %w", target, err)
	}
	return nil
}

// readDir lists the names in the tree's directory dir ("" when absent).
func (x *extractor) readDir(dir string) ([]string, error) {
	f, err := x.root.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
