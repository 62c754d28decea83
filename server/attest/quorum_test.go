package attest_test

import (
	"context"
	"crypto/x509"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/testenv"
)

// newEtcdEnv is newEnv on the etcd store st instead of a bbolt file (db
// is nil): a server of several sharing st.
func newEtcdEnv(t *testing.T, st store.Store) *testEnv {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Init(dir, pki.InitOptions{DNSNames: []string{"sealroot.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatalf("pki.Init: %v", err)
	}
	cert, err := pki.LoadServer(dir)
	if err != nil {
		t.Fatalf("pki.LoadServer: %v", err)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatalf("pki.LoadCA: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	auditPath := filepath.Join(dir, "audit.log")
	al, err := audit.Open(auditPath)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(dir, "secrets.age.key"))
	if err != nil {
		t.Fatalf("secrets.LoadOrCreate: %v", err)
	}
	logger := testenv.Logger(t, "", hclog.Debug)
	mgr := machines.New(machines.Config{Store: st, Box: box, Audit: al, Logger: logger})
	srv, err := attest.New(attest.Config{Certificate: cert, Store: st, Audit: al, Secrets: mgr, Logger: logger})
	if err != nil {
		t.Fatalf("attest.New: %v", err)
	}
	mgr.SetAttestations(srv)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ctx, pc); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		pc.Close()
		al.Close()
	})
	return &testEnv{addr: pc.LocalAddr().String(), roots: roots, mgr: mgr, auditPath: auditPath, audit: al, dir: dir, srv: srv}
}

// TestAttestEtcdQuorum: attestation through the real exchange (QUIC,
// simulator TPM) on a store in a three-member etcd cluster. With one
// member killed the cluster keeps its quorum and machines attest on; with
// two killed it has none, and an attestation is refused cleanly: the
// agent gets an error, not a credential, and the machine's record is what
// it was (no boot counted, no reset count moved, same version). With a
// member back, the quorum returns and the machine attests again.
func TestAttestEtcdQuorum(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 3)
	st, err := store.NewEtcd(ctx, c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEtcdEnv(t, st)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")
	attest := func() (*agentattest.Result, error) {
		m.reboot(t)
		return attestOnce(t, e.client(t, m.dev))
	}
	if _, err := attest(); err != nil {
		t.Fatalf("attest with three members: %v", err)
	}

	c.Stop(2)
	for i := range 2 {
		if _, err := attest(); err != nil {
			t.Fatalf("attest %d with one member of three down: %v", i, err)
		}
	}
	before, err := st.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}

	c.Stop(1)
	start := time.Now()
	res, err := attest()
	t.Logf("attest without quorum: %v after %v", err, time.Since(start))
	if err == nil {
		t.Fatalf("attest without quorum released a credential: %+v", res.Payload)
	}
	e.wantRefused(t, err, m.id, "store-unavailable")
	if d := time.Since(start); d > time.Minute/2 {
		t.Errorf("the refusal took %v: a store without quorum must not hold the exchange", d)
	}

	c.Restart(1)
	after, err := st.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootCount != before.BootCount || after.ResetCount != before.ResetCount || after.Version != before.Version {
		t.Fatalf("a refused attestation changed the record: boots %d -> %d, reset count %d -> %d, version %d -> %d",
			before.BootCount, after.BootCount, before.ResetCount, after.ResetCount, before.Version, after.Version)
	}

	// The quorum is lost in the middle of an exchange: after the server
	// read the machine and sent its challenge, while the agent gathers
	// its evidence. The release cannot commit; the agent is refused and
	// the record is what it was.
	read := m.dev.ReadEventLog
	var once sync.Once
	m.dev.ReadEventLog = func() ([]byte, error) {
		once.Do(func() { c.Stop(1) })
		return read()
	}
	_, err = attest()
	m.dev.ReadEventLog = read
	e.wantRefused(t, err, m.id, "store-unavailable")
	c.Restart(1)
	after, err = st.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootCount != before.BootCount || after.ResetCount != before.ResetCount || after.Version != before.Version {
		t.Fatalf("a refused attestation changed the record: boots %d -> %d, reset count %d -> %d, version %d -> %d",
			before.BootCount, after.BootCount, before.ResetCount, after.ResetCount, before.Version, after.Version)
	}
	if _, err := attest(); err != nil {
		t.Fatalf("attest after the quorum returned: %v", err)
	}
	if got, _ := st.Machine(ctx, m.id); got.BootCount != before.BootCount+1 {
		t.Fatalf("boot count %d after the quorum returned, want %d", got.BootCount, before.BootCount+1)
	}
}
