package rootnfs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/basepeer"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// A volatile NFS root of a base this server (B, the lab's image store)
// lacks: the root service fetches it from peer A over the base service
// (mutual TLS, certificates of one CA from `pki init` and `pki issue`),
// whose tree is rebuilt from the received ext4 image, and the lab's real
// ganesha exports it to the machine, which reads A's files back with
// libnfs, byte for byte, and cannot write. An image no peer holds fails
// the Prepare naming it, and nothing is exported.
func TestVolatileRootOfFetchedBase(t *testing.T) {
	testenv.RequireTools(t, "debugfs")
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Peer A: its own image store, serving its bases on loopback.
	caDir, bDir := t.TempDir(), filepath.Join(t.TempDir(), "b")
	if err := pki.Init(caDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Issue(caDir, bDir, pki.IssueOptions{DNSNames: []string{"boot-b"}}); err != nil {
		t.Fatal(err)
	}
	certA, err := pki.LoadServer(caDir)
	if err != nil {
		t.Fatal(err)
	}
	certB, err := pki.LoadServer(bDir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(filepath.Join(caDir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	log := testenv.Logger(t, "test", hclog.Info)
	imagesA, err := image.Open(image.Config{Dir: filepath.Join(t.TempDir(), "images"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // bases are immutable files
		ims, _ := imagesA.List()
		for _, im := range ims {
			imagesA.Remove(im.Name)
		}
		imagesA.GC(nil)
	})
	src := t.TempDir()
	payload := bytes.Repeat([]byte("desk payload "), 20000)
	for name, content := range map[string][]byte{"etc/os-release": []byte("desk of A\n"), "usr/lib/payload": payload} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(src, "lib")); err != nil {
		t.Fatal(err)
	}
	desk, err := imagesA.Import(ctx, "desk", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- basepeer.NewServer(imagesA, certA, pool, log).Serve(serveCtx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("base service of A: %v", err)
		}
	})

	// B: the lab's store and provider behind a root service that fetches
	// a missing base first, as a server sharing a store is built.
	client := basepeer.NewClient(basepeer.ClientTLS(certB, pool))
	t.Cleanup(client.Close)
	puller := basepeer.NewPuller(basepeer.PullerConfig{Self: "boot-b",
		Peers:  registry{{Name: "boot-a", BaseAddress: ln.Addr().String()}},
		Client: client, Images: l.images, Logger: log})
	t.Cleanup(func() { puller.Close() })
	rs := roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindVolatileNFS: l.p}, Bases: puller})
	if l.images.Has(desk.Digest) {
		t.Fatal("B holds desk's base before any fetch")
	}

	volatile := func(ref string) roots.Request {
		return roots.Request{MachineID: idA, RemoteAddr: addrA + ":1000", Tunnel: tunnelOf(addrA),
			Plan: wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: ref, wire.VolatileVia: wire.ViaNFS}}}
	}
	_, _, err = rs.Prepare(ctx, volatile("nope"))
	if !errors.Is(err, basepeer.ErrNotOnPeers) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Prepare of a volatile root of an image no peer holds = %v, want no running peer holds it, naming it", err)
	}
	if ex := l.p.Exports(); len(ex) != 0 {
		t.Fatalf("exports after a refused Prepare: %+v", ex)
	}

	plan, _, err := rs.Prepare(ctx, volatile("desk"))
	if err != nil {
		t.Fatalf("Prepare of a volatile NFS root of an image only A holds = %v, want it fetched and exported", err)
	}
	if plan.Params[wire.NFSPath] != "/"+ExportName(idA) || plan.Params[wire.VolatileVia] != wire.ViaNFS {
		t.Fatalf("plan = %+v", plan)
	}
	if im, err := l.images.Get("desk"); err != nil || im.Digest != desk.Digest || im.Version != 1 {
		t.Fatalf("B's desk = %+v, %v; want desk@v1 sha256:%.12s", im, err, desk.Digest)
	}

	// The machine reads A's files through ganesha.
	l.mustRead(t, l.a, idA, "/etc/os-release", "desk of A\n")
	if got, err := l.read(l.a, idA, "/lib/payload"); err != nil || got != string(payload) {
		t.Fatalf("read /lib/payload (through the symlink) from the fetched base: %d bytes, %v; want A's %d bytes", len(got), err, len(payload))
	}
	if err := l.write(l.a, idA, "/x", "x"); err == nil || !strings.Contains(err.Error(), "ROFS") {
		t.Fatalf("write to the fetched volatile base = %v; want NFS4ERR_ROFS", err)
	}
	if err := rs.Release(ctx, idA); err != nil {
		t.Fatalf("Release = %v", err)
	}
}

// registry lists the running servers, as the store's registry would.
type registry []store.ServerInfo

func (r registry) Servers(context.Context) ([]store.ServerInfo, error) { return r, nil }
