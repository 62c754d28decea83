package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarEntry is one entry of a generated layer.
type tarEntry struct {
	name, body, link string
	typ              byte
}

func layerOf(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	when := time.Unix(1700000000, 0)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, ModTime: when, Linkname: e.link, Size: int64(len(e.body))}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode, h.Size = 0o755, 0
		}
		if h.Typeflag == tar.TypeChar {
			h.Devmajor, h.Devminor, h.Size = 1, 3, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// twoLayers: the second layer deletes a file (whiteout), empties a
// directory (opaque whiteout), replaces a file and adds one.
func twoLayers(t *testing.T) v1.Image {
	return imageOf(t,
		layerOf(t, tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/hostname", body: "old\n"},
			tarEntry{name: "etc/gone", body: "x"}, tarEntry{name: "var/cache/a", body: "a"}, tarEntry{name: "var/cache/b", body: "b"},
			tarEntry{name: "dev/null", typ: tar.TypeChar}),
		layerOf(t, tarEntry{name: "etc/hostname", body: "new\n"}, tarEntry{name: "etc/.wh.gone"},
			tarEntry{name: "var/cache/.wh..wh..opq"}, tarEntry{name: "var/cache/c", body: "c"}, tarEntry{name: "usr/bin/app", body: "app"}),
	)
}

func checkFlattened(t *testing.T, s *Store, im *Image) {
	t.Helper()
	tree, err := s.TreePath(im.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"etc/hostname": "new\n", "var/cache/c": "c", "usr/bin/app": "app"}
	for n, body := range want {
		if b, err := os.ReadFile(filepath.Join(tree, n)); err != nil || string(b) != body {
			t.Errorf("%s = %q, %v; want %q", n, b, err, body)
		}
	}
	for _, n := range []string{"etc/gone", "var/cache/a", "var/cache/b", "etc/.wh.gone", "var/cache/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(tree, n)); err == nil {
			t.Errorf("%s exists after the upper layer's whiteout", n)
		}
	}
}

// An image pulled from a registry (in-process, on loopback), read from an
// OCI layout and from a `docker save` archive flattens to the same tree
// and base: whiteouts applied, reproducible.
func TestImportOCI(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	img := twoLayers(t)

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(reg.URL, "http://") + "/sealroot/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	fromRegistry, err := s.Import(ctx, "app", RegistryPrefix+ref.String(), nil)
	if err != nil {
		t.Fatalf("Import(registry) = %v", err)
	}
	checkFlattened(t, s, fromRegistry)
	if d, _ := img.Digest(); fromRegistry.Origin != d.String() {
		t.Errorf("Origin = %s, want the image digest %s", fromRegistry.Origin, d)
	}

	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	fromLayout, err := s.Import(ctx, "app-layout", LayoutPrefix+dir, nil)
	if err != nil {
		t.Fatalf("Import(layout) = %v", err)
	}
	archive := filepath.Join(t.TempDir(), "app.tar")
	if err := tarball.WriteToFile(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	fromArchive, err := s.Import(ctx, "app-archive", LayoutPrefix+archive, nil)
	if err != nil {
		t.Fatalf("Import(archive) = %v", err)
	}
	if fromLayout.Digest != fromRegistry.Digest || fromArchive.Digest != fromRegistry.Digest {
		t.Fatalf("digests: registry %.12s, layout %.12s, archive %.12s; want one", fromRegistry.Digest, fromLayout.Digest, fromArchive.Digest)
	}
}

// Layers are held to the rules of every import.
func TestImportOCIRefusesUnsafe(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"traversal", []tarEntry{{name: "../evil", body: "x"}}},
		{"absolute", []tarEntry{{name: "/etc/evil", body: "x"}}},
		{"whiteout_traversal", []tarEntry{{name: "../.wh.etc"}}},
		{"through_symlink", []tarEntry{{name: "etc", typ: tar.TypeSymlink, link: "/tmp"}, {name: "etc/evil", body: "x"}}},
		{"device_outside_dev", []tarEntry{{name: "etc/sda", typ: tar.TypeChar}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			p, err := layout.Write(dir, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AppendImage(imageOf(t, layerOf(t, tc.entries...))); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Import(ctx, "bad", LayoutPrefix+dir, nil); !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Import = %v, want ErrUnsafePath", err)
			}
		})
	}
	if _, err := s.Import(ctx, "bad", LayoutPrefix+"relative/dir", nil); err == nil {
		t.Fatal("Import(relative layout path) succeeded")
	}
}
