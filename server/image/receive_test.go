package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// imported imports makeTree's tree into a new store and returns the store,
// the image and its base's bytes.
func imported(t *testing.T) (*Store, *Image, []byte) {
	t.Helper()
	s := newStore(t)
	im, err := s.Import(context.Background(), "os", makeTree(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.BasePath(im.Digest)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return s, im, b
}

// checkNothingLeft fails unless s holds no base, no tree and nothing in tmp.
func checkNothingLeft(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"bases", "trees", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(s.dir, d)); len(ents) > 0 {
			t.Errorf("%s/ holds %s after a refused receive", d, ents[0].Name())
		}
	}
}

func TestReceive(t *testing.T) {
	_, im, body := imported(t)
	b := newStore(t)
	ctx := context.Background()
	if err := b.Receive(ctx, im.Digest, int64(len(body)), bytes.NewReader(body)); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if err := b.Verify(im.Digest); err != nil {
		t.Fatalf("Verify after Receive: %v", err)
	}
	p, _ := b.BasePath(im.Digest)
	if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
		t.Fatal("received base differs from the sent one")
	}
	tree, _ := b.TreePath(im.Digest)
	if got, err := os.ReadFile(filepath.Join(tree, "bin/init")); err != nil || !strings.Contains(string(got), "echo hi") {
		t.Errorf("tree of the received base (for NFS roots): %q, %v", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(tree, "etc/hostname")); err == nil && os.Geteuid() == 0 {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("tree's etc/hostname owned by %d:%d, want 1000:1000 as in the base", st.Uid, st.Gid)
		}
	}
	if _, err := os.Stat(filepath.Join(tree, "lost+found")); err == nil {
		t.Error("tree keeps the filesystem's lost+found")
	}
	if _, err := b.Get("os"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before AddVersion = %v, want ErrNotFound", err)
	}
	v3 := *im
	v3.Version = 3
	if _, err := b.AddVersion(v3); err != nil {
		t.Fatalf("AddVersion: %v", err)
	}
	if got, err := b.Get("os"); err != nil || got.Version != 3 || got.Digest != im.Digest {
		t.Fatalf("Get(os) = %+v, %v; want v3 of the peer's digest", got, err)
	}
	if again, err := b.AddVersion(v3); err != nil || again.Version != 3 {
		t.Fatalf("AddVersion again = %+v, %v; want the same version", again, err)
	}
	other := v3
	other.Digest = strings.Repeat("0", 64)
	if _, err := b.AddVersion(other); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AddVersion of a base not held = %v, want ErrNotFound", err)
	}
	// A version of that number made here from other content conflicts.
	local, err := b.Import(ctx, "mine", t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	clash := *local
	clash.Digest = im.Digest
	if _, err := b.AddVersion(clash); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("AddVersion of mine@v1 naming another digest = %v, want ErrVersionConflict", err)
	}
}

func TestReceiveRefuses(t *testing.T) {
	_, im, body := imported(t)
	corrupt := bytes.Clone(body)
	corrupt[len(corrupt)/2] ^= 1
	for _, tt := range []struct {
		name   string
		digest string
		size   int64
		body   []byte
		want   error
	}{
		{"wrong_bytes", im.Digest, int64(len(body)), corrupt, ErrDigestMismatch},
		{"short", im.Digest, int64(len(body)), body[:len(body)-1], ErrBaseSize},
		{"long", im.Digest, int64(len(body) - 1), body, ErrBaseSize},
		{"too_large", im.Digest, MaxBaseSize + 1, body, ErrBaseSize},
		{"bad_digest", "sha256:" + im.Digest, int64(len(body)), body, ErrBadName},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newStore(t)
			err := b.Receive(context.Background(), tt.digest, tt.size, bytes.NewReader(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Receive = %v, want %v", err, tt.want)
			}
			checkNothingLeft(t, b)
		})
	}
	t.Run("context_ended", func(t *testing.T) {
		b := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Receive(ctx, im.Digest, int64(len(body)), bytes.NewReader(body)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Receive = %v, want context.Canceled", err)
		}
		checkNothingLeft(t, b)
	})
}
