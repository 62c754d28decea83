package basepeer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
)

// testPKI is a cluster CA with two servers' certificates from `pki init`
// and `pki issue`, and a foreign CA's server certificate.
type testPKI struct {
	caDir   string
	pool    *x509.CertPool
	a, b    tls.Certificate
	foreign tls.Certificate
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{caDir: t.TempDir()}
	if err := pki.Init(p.caDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	bDir := filepath.Join(t.TempDir(), "b")
	if _, err := pki.Issue(p.caDir, bDir, pki.IssueOptions{DNSNames: []string{"boot-b"}}); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if err := pki.Init(otherDir, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.a, err = pki.LoadServer(p.caDir); err != nil {
		t.Fatal(err)
	}
	if p.b, err = pki.LoadServer(bDir); err != nil {
		t.Fatal(err)
	}
	if p.foreign, err = pki.LoadServer(otherDir); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(filepath.Join(p.caDir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

// clientOnly is a certificate the cluster CA signed for client
// authentication only, as a machine's would be.
func (p *testPKI) clientOnly(t *testing.T) tls.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.caDir, pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	caKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.LoadCA(filepath.Join(p.caDir, pki.CACertFile))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "machine"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newImages(t *testing.T) *image.Store {
	s, _ := newImagesIn(t)
	return s
}

// newImagesIn is newImages, with the store's directory.
func newImagesIn(t *testing.T) (*image.Store, string) {
	t.Helper()
	testenv.RequireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	s, err := image.Open(image.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // GC clears the immutable flag so TempDir can go
		ims, _ := s.List()
		for _, im := range ims {
			s.Remove(im.Ref())
		}
		s.GC(nil)
	})
	return s, dir
}

// importOS imports a small tree into s as "os" and returns its version.
func importOS(t *testing.T, s *image.Store, content string) *image.Image {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte(content), 0o644)
	os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("sealroot "), 300000), 0o644)
	im, err := s.Import(context.Background(), "os", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// serve runs a base server of bases with cert on loopback until the test
// ends and returns it with its address.
func serve(t testing.TB, bases Bases, cert tls.Certificate, pool *x509.CertPool) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(bases, cert, pool, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

// peers is a fixed registry of running servers.
type peers []store.ServerInfo

func (p peers) Servers(context.Context) ([]store.ServerInfo, error) { return p, nil }

func puller(t *testing.T, reg peers, cert tls.Certificate, pool *x509.CertPool, into *image.Store) *Puller {
	c := NewClient(ClientTLS(cert, pool))
	t.Cleanup(c.Close)
	p := NewPuller(PullerConfig{Self: "boot-b", Peers: reg, Client: c, Images: into})
	t.Cleanup(func() { p.Close() })
	return p
}

func readBase(t *testing.T, s *image.Store, digest string) []byte {
	t.Helper()
	p, err := s.BasePath(digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPullFromPeer(t *testing.T) {
	p := newPKI(t)
	storeA, storeB := newImages(t), newImages(t)
	importOS(t, storeA, "v1")
	v2 := importOS(t, storeA, "v2")
	_, addr := serve(t, storeA, p.a, p.pool)
	reg := peers{{Name: "boot-a", BaseAddress: addr}, {Name: "boot-b", BaseAddress: "127.0.0.1:1"}}
	pb := puller(t, reg, p.b, p.pool, storeB)
	ctx := context.Background()

	got, err := pb.Pull(ctx, "os")
	if err != nil {
		t.Fatalf("Pull(os): %v", err)
	}
	if got.Digest != v2.Digest || got.From != "boot-a" || len(got.Versions) != 1 || got.Versions[0].Ref() != "os@v2" {
		t.Fatalf("Pull(os) = %+v, want os@v2 sha256:%s from boot-a", got, v2.Digest)
	}
	if !bytes.Equal(readBase(t, storeB, v2.Digest), readBase(t, storeA, v2.Digest)) {
		t.Fatal("base on B differs from A's")
	}
	if im, err := storeB.Get("os@v2"); err != nil || im.Digest != v2.Digest || im.TreeDigest != v2.TreeDigest {
		t.Fatalf("B's os@v2 = %+v, %v", im, err)
	}
	if tree, _ := storeB.TreePath(v2.Digest); !fileHas(filepath.Join(tree, "etc/os-release"), "v2") {
		t.Error("B has no tree of the base (NFS roots)")
	}
	if _, err := storeB.Get("os@v1"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("B has os@v1 without pulling it: %v", err)
	}
	again, err := pb.Pull(ctx, "os@v2")
	if err != nil || again.From != "" {
		t.Fatalf("second Pull = %+v, %v; want nothing fetched", again, err)
	}

	// Ensure pulls what a root plan names only when it is not here.
	v1, _ := storeA.Get("os@v1")
	if err := pb.Ensure(ctx, "os@v1"); err != nil {
		t.Fatalf("Ensure(os@v1): %v", err)
	}
	if !storeB.Has(v1.Digest) {
		t.Fatal("Ensure left os@v1's base on A only")
	}
	if err := pb.Ensure(ctx, "os"); err != nil {
		t.Fatalf("Ensure(os): %v", err)
	}

	// By digest, into a third store.
	storeC := newImages(t)
	pc := puller(t, reg, p.b, p.pool, storeC)
	byDigest, err := pc.Pull(ctx, "sha256:"+v1.Digest)
	if err != nil || byDigest.From != "boot-a" || len(byDigest.Versions) != 1 || byDigest.Versions[0].Ref() != "os@v1" {
		t.Fatalf("Pull(sha256:%.12s) = %+v, %v", v1.Digest, byDigest, err)
	}
	if err := storeC.Verify(v1.Digest); err != nil {
		t.Fatal(err)
	}
}

func fileHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

func TestPullNotOnPeers(t *testing.T) {
	p := newPKI(t)
	storeA, storeB := newImages(t), newImages(t)
	importOS(t, storeA, "v1")
	_, addr := serve(t, storeA, p.a, p.pool)
	pb := puller(t, peers{{Name: "boot-a", BaseAddress: addr}}, p.b, p.pool, storeB)
	missing := strings.Repeat("ab", 32)
	for _, ref := range []string{"nope", "os@v9", "sha256:" + missing} {
		_, err := pb.Pull(context.Background(), ref)
		if !errors.Is(err, ErrNotOnPeers) || !strings.Contains(err.Error(), strings.TrimPrefix(ref, "sha256:")) {
			t.Errorf("Pull(%s) = %v, want ErrNotOnPeers naming it", ref, err)
		}
		if err := pb.Ensure(context.Background(), ref); ref != "sha256:"+missing && !errors.Is(err, ErrNotOnPeers) {
			t.Errorf("Ensure(%s) = %v, want ErrNotOnPeers", ref, err)
		}
	}
	lone := puller(t, peers{{Name: "boot-b", BaseAddress: "127.0.0.1:1"}}, p.b, p.pool, storeB)
	if _, err := lone.Pull(context.Background(), "os"); !errors.Is(err, ErrNotOnPeers) || !strings.Contains(err.Error(), "no running peer serves bases") {
		t.Errorf("Pull with no peer = %v, want ErrNotOnPeers saying no peer serves bases", err)
	}
}

// lyingBases lists a real store's versions but serves other bytes for
// every base: a corrupt or malicious peer.
type lyingBases struct {
	*image.Store
	path string
}

func (l lyingBases) BasePath(string) (string, error) { return l.path, nil }

func TestPullRefusesWrongBytes(t *testing.T) {
	p := newPKI(t)
	storeA := newImages(t)
	storeB, dirB := newImagesIn(t)
	im := importOS(t, storeA, "v1")
	wrong := readBase(t, storeA, im.Digest)
	wrong[len(wrong)-1] ^= 0xff
	path := filepath.Join(t.TempDir(), "wrong.img")
	os.WriteFile(path, wrong, 0o644)
	_, addr := serve(t, lyingBases{storeA, path}, p.a, p.pool)
	pb := puller(t, peers{{Name: "boot-a", BaseAddress: addr}}, p.b, p.pool, storeB)

	_, err := pb.Pull(context.Background(), "os")
	if !errors.Is(err, image.ErrDigestMismatch) || !strings.Contains(err.Error(), im.Digest) {
		t.Fatalf("Pull from a peer sending wrong bytes = %v, want ErrDigestMismatch naming the digest", err)
	}
	if storeB.Has(im.Digest) {
		t.Fatal("B holds the base after a mismatch")
	}
	if ims, _ := storeB.List(); len(ims) != 0 {
		t.Fatalf("B recorded %v after a mismatch", ims)
	}
	for _, sub := range []string{"bases", "trees", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(dirB, sub)); len(ents) > 0 {
			t.Errorf("B's %s/ holds %s after a mismatch", sub, ents[0].Name())
		}
	}
}

func TestOnlyClusterServersFetch(t *testing.T) {
	p := newPKI(t)
	storeA := newImages(t)
	im := importOS(t, storeA, "v1")
	srv, addr := serve(t, storeA, p.a, p.pool)
	ctx := context.Background()

	for _, tt := range []struct {
		name string
		cert *tls.Certificate
	}{
		{"other_ca_server", &p.foreign},
		{"machine_client_cert", ptr(p.clientOnly(t))},
		{"no_certificate", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conf := ClientTLS(tls.Certificate{}, p.pool)
			conf.Certificates = nil
			if tt.cert != nil {
				conf.Certificates = []tls.Certificate{*tt.cert}
			}
			c := NewClient(conf)
			defer c.Close()
			before := srv.Refused()
			into := newImages(t)
			err := c.Fetch(ctx, addr, im.Digest, into)
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Fatalf("Fetch = %v, want a TLS refusal", err)
			}
			if into.Has(im.Digest) {
				t.Fatal("base fetched without a server certificate of the cluster")
			}
			if srv.Refused() != before+1 {
				t.Errorf("Refused = %d, want %d", srv.Refused(), before+1)
			}
		})
	}
	t.Run("peer_of_other_ca", func(t *testing.T) {
		_, fake := serve(t, storeA, p.foreign, p.pool)
		c := NewClient(ClientTLS(p.b, p.pool))
		defer c.Close()
		if _, err := c.Images(ctx, fake); !errors.Is(err, ErrNotServer) {
			t.Fatalf("Images from a peer of another CA = %v, want ErrNotServer", err)
		}
	})
	t.Run("cluster_server", func(t *testing.T) {
		c := NewClient(ClientTLS(p.b, p.pool))
		defer c.Close()
		if ims, err := c.Images(ctx, addr); err != nil || len(ims) != 1 {
			t.Fatalf("Images = %v, %v", ims, err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// stallingPeer answers the version list of a real store and, for a
// base, its length and a few bytes, then nothing until the client goes.
func stallingPeer(t *testing.T, list *image.Store, p *testPKI) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/images", func(w http.ResponseWriter, r *http.Request) {
		ims, _ := list.List()
		json.NewEncoder(w).Encode(ims)
	})
	mux.HandleFunc("GET /v1/bases/{digest}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	hs := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(tls.NewListener(ln, ServerTLS(p.a, p.pool, nil)))
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return ln.Addr().String()
}

// A boot that gives up leaves its fetch running for the next one; Close
// stops it and nothing is left in the store.
func TestFetchOutlivesCallerUntilClose(t *testing.T) {
	p := newPKI(t)
	storeA := newImages(t)
	importOS(t, storeA, "v1")
	storeB, dirB := newImagesIn(t)
	c := NewClient(ClientTLS(p.b, p.pool))
	defer c.Close()
	pb := NewPuller(PullerConfig{Self: "boot-b", Peers: peers{{Name: "boot-a", BaseAddress: stallingPeer(t, storeA, p)}},
		Client: c, Images: storeB})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := pb.Ensure(ctx, "os"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ensure with a stalling peer = %v, want the caller's deadline", err)
	}
	pb.mu.Lock()
	running := len(pb.pending)
	pb.mu.Unlock()
	if running == 0 {
		t.Fatal("the fetch ended with its first caller")
	}
	closed := make(chan struct{})
	go func() {
		pb.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the fetch")
	}
	for _, sub := range []string{"bases", "trees", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(dirB, sub)); len(ents) > 0 {
			t.Errorf("B's %s/ holds %s after a stopped fetch", sub, ents[0].Name())
		}
	}
	if err := pb.Ensure(context.Background(), "os"); err == nil || !strings.Contains(err.Error(), "closing") {
		t.Errorf("Ensure after Close = %v, want refused", err)
	}
}

func TestFetchEndsWhenPeerStalls(t *testing.T) {
	p := newPKI(t)
	storeA := newImages(t)
	im := importOS(t, storeA, "v1")
	storeB, dirB := newImagesIn(t)
	c := NewClient(ClientTLS(p.b, p.pool))
	defer c.Close()
	c.idle = 200 * time.Millisecond
	err := c.Fetch(context.Background(), stallingPeer(t, storeA, p), im.Digest, storeB)
	if err == nil || !strings.Contains(err.Error(), "sent nothing for 200ms") {
		t.Fatalf("Fetch from a stalling peer = %v, want the idle timeout", err)
	}
	for _, sub := range []string{"bases", "trees", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(dirB, sub)); len(ents) > 0 {
			t.Errorf("B's %s/ holds %s after a stalled fetch", sub, ents[0].Name())
		}
	}
}
