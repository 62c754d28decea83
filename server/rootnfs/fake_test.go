package rootnfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/nfs"
)

// fakeMount is one mount the fakeMounter holds.
type fakeMount struct {
	lower, upper string // upper "" for a read-only bind
}

// fakeMounter is a Mounter over an in-memory mount table that behaves as
// the kernel does where the provider depends on it: an overlay upper is
// tied to the lower it was first mounted over (nfs.ErrBaseChanged), a
// mount with open files refuses a plain unmount (EBUSY) and a lazily
// detached overlay keeps its upper held (EBUSY on the next overlay over
// it) until release.
type fakeMounter struct {
	mu      sync.Mutex
	mounts  map[string]fakeMount // by target
	madeOn  map[string]string    // upper -> the lower it was made on
	busy    map[string]bool      // targets with open files
	held    map[string]bool      // uppers of lazily detached overlays
	lazy    []string             // targets detached lazily, in order
	failErr error                // if set, Overlay and BindReadOnly fail with it
}

func newFakeMounter() *fakeMounter {
	return &fakeMounter{mounts: map[string]fakeMount{}, madeOn: map[string]string{}, busy: map[string]bool{}, held: map[string]bool{}}
}

func (f *fakeMounter) Mounted(target string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.mounts[target]
	return ok, nil
}

func (f *fakeMounter) Overlay(lower, upper, work, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.mountableLocked(target); err != nil {
		return err
	}
	if f.held[upper] {
		return &os.PathError{Op: "mount", Path: target, Err: unix.EBUSY}
	}
	// The kernel ties an upper to its lower through the overlay index in
	// work and the origin xattrs in upper; an emptied upper starts over.
	if ents, _ := os.ReadDir(upper); len(ents) == 0 {
		delete(f.madeOn, upper)
	}
	if on, ok := f.madeOn[upper]; ok && on != lower {
		return fmt.Errorf("fake overlay %s: %w (%w)", target, nfs.ErrBaseChanged, unix.ESTALE)
	}
	f.madeOn[upper] = lower
	// Something the machine wrote, so the upper is no longer empty.
	if err := os.WriteFile(filepath.Join(upper, ".made-on"), []byte(lower), 0o600); err != nil {
		return err
	}
	f.mounts[target] = fakeMount{lower: lower, upper: upper}
	return nil
}

func (f *fakeMounter) BindReadOnly(dir, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.mountableLocked(target); err != nil {
		return err
	}
	f.mounts[target] = fakeMount{lower: dir}
	return nil
}

func (f *fakeMounter) mountableLocked(target string) error {
	if f.failErr != nil {
		return f.failErr
	}
	if _, ok := f.mounts[target]; ok {
		return fmt.Errorf("fake: %s is already mounted", target)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		return fmt.Errorf("fake: mount point %s: %v", target, err)
	}
	return nil
}

func (f *fakeMounter) Unmount(target string, lazy bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.mounts[target]
	if !ok {
		return &os.PathError{Op: "umount", Path: target, Err: unix.EINVAL}
	}
	if f.busy[target] && !lazy {
		return &os.PathError{Op: "umount", Path: target, Err: unix.EBUSY}
	}
	if f.busy[target] && m.upper != "" {
		f.held[m.upper] = true
	}
	if lazy {
		f.lazy = append(f.lazy, target)
	}
	delete(f.mounts, target)
	delete(f.busy, target)
	return nil
}

// mount returns what is mounted at target.
func (f *fakeMounter) mount(target string) (fakeMount, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.mounts[target]
	return m, ok
}

// setBusy marks target as having open files (ganesha holding them).
func (f *fakeMounter) setBusy(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.busy[target] = true
}

// releaseHeld lets go of every held upper (the NFSv4 leases expired).
func (f *fakeMounter) releaseHeld() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.held)
}

// fakeImages maps image names to digests; trees live under /trees.
type fakeImages struct {
	mu     sync.Mutex
	digest map[string]string
}

func (f *fakeImages) set(name, digest string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.digest[name] = digest
}

func (f *fakeImages) Get(name string) (*image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.digest[name]
	if !ok {
		return nil, fmt.Errorf("image %q: %w", name, image.ErrNotFound)
	}
	return &image.Image{Name: name, Digest: d}, nil
}

// Resolve is Get: the fake's names have no versions.
func (f *fakeImages) Resolve(name, _ string) (*image.Image, error) { return f.Get(name) }

func (f *fakeImages) TreePath(digest string) (string, error) { return treeOf(digest), nil }

func treeOf(digest string) string { return "/trees/sha256-" + digest }

// fakeExporter records the export sets it is given; failErr fails them.
// A non-nil serving makes every wait wait until it is closed, as while
// ganesha reloads.
type fakeExporter struct {
	mu      sync.Mutex
	calls   [][]nfs.Export
	failErr error
	serving chan struct{}
}

func (f *fakeExporter) WriteExports(exports []nfs.Export) (func(context.Context) error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failErr != nil {
		return nil, f.failErr
	}
	f.calls = append(f.calls, slices.Clone(exports))
	serving := f.serving
	return func(ctx context.Context) error {
		if serving == nil {
			return nil
		}
		select {
		case <-serving:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// written is how many export sets were given.
func (f *fakeExporter) written() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// current is the export set last given.
func (f *fakeExporter) current() []nfs.Export {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

var errFakeExport = errors.New("fake ganesha is down")

// fakeLab is a Provider over a fake mounter, images and exporter: its
// logic without root.
type fakeLab struct {
	t      *testing.T
	dir    string
	mnt    *fakeMounter
	images *fakeImages
	exp    *fakeExporter
	p      *Provider
}

func newFakeLab(t *testing.T) *fakeLab {
	t.Helper()
	l := &fakeLab{t: t, dir: t.TempDir(), mnt: newFakeMounter(),
		images: &fakeImages{digest: map[string]string{"base": digest1}}, exp: &fakeExporter{}}
	l.p = l.provider()
	return l
}

// provider returns a new Provider over the lab's directory, as after a
// server restart.
func (l *fakeLab) provider() *Provider {
	l.t.Helper()
	p, err := New(Config{Dir: filepath.Join(l.dir, "roots"), Images: l.images, Exporter: l.exp, Mounter: l.mnt,
		ServerAddr: netip.MustParseAddr(serverAddr)})
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

func (l *fakeLab) prepare(id, kind, addr string) error {
	_, _, err := l.p.Prepare(context.Background(), request(machine(id, kind), tunnelOf(addr)))
	return err
}

func (l *fakeLab) mustPrepare(id, kind, addr string) {
	l.t.Helper()
	if err := l.prepare(id, kind, addr); err != nil {
		l.t.Fatalf("Prepare(%.4s, %s) = %v", id, kind, err)
	}
}

func (l *fakeLab) state(id string) *state {
	l.t.Helper()
	st, err := l.p.load(id)
	if err != nil {
		l.t.Fatalf("load %.4s: %v", id, err)
	}
	return st
}

const (
	idC   = "cccc000000000000000000000000000000000000000000000000000000000003"
	addrC = "10.232.0.4"

	digest1 = "1111111111111111111111111111111111111111111111111111111111111111"
	digest2 = "2222222222222222222222222222222222222222222222222222222222222222"
)
