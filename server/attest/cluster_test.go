package attest_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/testenv"
)

// cluster is several attestation servers over real QUIC on 127.0.0.1
// sharing one etcd store on a real three-member embedded cluster, as
// several `sealroot serve` processes would: one CA, each its own store
// client, audit log and change feed, and one age identity, or with
// ownKeys each its own, joined to the secrets keyring by the first.
type cluster struct {
	pkiDir  string
	etcd    *etcdtest.Cluster
	prefix  string
	ownKeys bool
	first   *keyring.Keyring // the first member's, which joins the others
	// commitWithin is the members' attest.Cluster.CommitWithin; 0: the
	// default.
	commitWithin time.Duration
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Init(dir, pki.InitOptions{DNSNames: []string{"sealroot.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatalf("pki.Init: %v", err)
	}
	return &cluster{pkiDir: dir, etcd: etcdtest.Start(t, 3), prefix: etcdtest.Prefix(t)}
}

// joinKeyring returns the keyring of a member with identity box: the
// first member makes it, and joins every later one whose identity is
// not in it yet (`sealroot cluster join`).
func (c *cluster) joinKeyring(t *testing.T, st keyring.Store, box *secrets.Box) *keyring.Keyring {
	t.Helper()
	ctx := context.Background()
	k := keyring.New(st, box, nil)
	kr, err := k.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.first == nil {
		c.first = k
	} else if !slices.Contains(kr.Recipients, k.Recipient()) {
		if _, err := c.first.Join(ctx, k.Recipient()); err != nil {
			t.Fatalf("keyring join: %v", err)
		}
	}
	return k
}

// server starts one member server of c, without home servers.
func (c *cluster) server(t *testing.T, mod ...func(*attest.Config)) *testEnv {
	t.Helper()
	e, _ := c.member(t, "", mod...)
	return e
}

// member starts one member server of c named name; unless name is "",
// it registers in the store and serves as a home server. stop stops it
// (also done at cleanup).
func (c *cluster) member(t *testing.T, name string, mod ...func(*attest.Config)) (_ *testEnv, stop func()) {
	t.Helper()
	cert, roots := loadPKI(t, c.pkiDir)
	st, err := store.NewEtcd(context.Background(), c.etcd.Client(), c.prefix, testenv.Logger(t, "", hclog.Debug))
	if err != nil {
		t.Fatalf("store.NewEtcd: %v", err)
	}
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.log")
	al, err := audit.Open(auditPath)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	keyDir := c.pkiDir
	if c.ownKeys {
		keyDir = dir
	}
	box, err := secrets.LoadOrCreate(filepath.Join(keyDir, "secrets.age.key"))
	if err != nil {
		t.Fatalf("secrets.LoadOrCreate: %v", err)
	}
	logger := testenv.Logger(t, "", hclog.Debug)
	keys := c.joinKeyring(t, st, box)
	cfg := attest.Config{Certificate: cert, Store: st, Audit: al, Logger: logger}
	for _, m := range mod {
		m(&cfg)
	}
	if name != "" {
		cfg.Cluster = &attest.Cluster{Name: name, Store: st, Box: keys, CommitWithin: c.commitWithin}
	}
	mgr := machines.New(machines.Config{Store: st, Box: box, Keyring: keys, Audit: al, Logger: logger, Withdraw: cfg.Withdraw})
	cfg.Secrets = mgr
	srv, err := attest.New(cfg)
	if err != nil {
		t.Fatalf("attest.New: %v", err)
	}
	mgr.SetAttestations(srv)
	more := []func(context.Context) error{func(ctx context.Context) error { return srv.FollowStore(ctx, st) }}
	if name != "" {
		more = append(more,
			func(ctx context.Context) error { return st.RegisterServer(ctx, store.ServerInfo{Name: name}) },
			srv.ServeHome)
	}
	addr, stopServe := serve(t, name, srv, more...)
	if name != "" {
		waitRegistered(t, st, name)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopServe()
			al.Close()
			st.Close()
		})
	}
	t.Cleanup(stop)
	return &testEnv{addr: addr, roots: roots, mgr: mgr, auditPath: auditPath, audit: al, dir: dir, srv: srv}, stop
}

func waitRegistered(t *testing.T, st store.ClusterStore, name string) {
	t.Helper()
	for range 100 {
		ss, err := st.Servers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			if s.Name == name {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server %s did not register", name)
}

// An approval made on server A holds on server B at once: the machine's
// next attestation on B gets its credential.
func TestClusterApproveOnOneAttestOnAnother(t *testing.T) {
	c := newCluster(t)
	a, b := c.server(t), c.server(t)
	m := newMachine(t, defaultSpec)
	_, err := attestOnce(t, b.client(t, m.dev))
	var p *agentattest.PendingError
	if !errors.As(err, &p) {
		t.Fatalf("first attestation on B = %v, want pending", err)
	}
	if _, err := a.mgr.Approve(context.Background(), m.id[:16], api.ApproveOptions{Name: "node-c"}); err != nil {
		t.Fatalf("Approve on A: %v", err)
	}
	if _, err := attestOnce(t, b.client(t, m.dev)); err != nil {
		t.Fatalf("attest on B right after approval on A = %v, want a credential", err)
	}
}

// A revocation or forget made on server A while server B holds an
// exchange of the machine between its messages (challenge sent, evidence
// not yet in) ends that exchange on B at once: B's audit log records the
// refusal while the agent still waits, the agent is refused with the
// check that names why, and B releases nothing.
func TestClusterRevokeOnOneEndsExchangeOnAnother(t *testing.T) {
	for _, tt := range []struct {
		name  string
		act   func(t *testing.T, e *testEnv, m *testMachine)
		check string
	}{
		{"revoke", revoke, "revoked"},
		{"forget", forget, "forgotten"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t)
			a, b := c.server(t), c.server(t)
			m := newMachine(t, defaultSpec)
			a.enrollAndApprove(t, m, "node-r")
			if _, err := attestOnce(t, b.client(t, m.dev)); err != nil {
				t.Fatalf("attest on B before: %v", err)
			}
			before, err := a.mgr.Machine(ctx, m.id)
			if err != nil {
				t.Fatal(err)
			}
			m.reboot(t)
			release := b.heldAttest(t, m)
			tt.act(t, a, m)
			b.waitAudit(t, m.id, tt.check) // B ended it before the agent went on
			_, err = release()
			var r *agentattest.RefusedError
			if !errors.As(err, &r) || r.Check != tt.check {
				t.Fatalf("attest on B = %v, want refused by check %q", err, tt.check)
			}
			if tt.check == "forgotten" {
				return
			}
			after, err := a.mgr.Machine(ctx, m.id)
			if err != nil {
				t.Fatal(err)
			}
			if after.BootCount != before.BootCount {
				t.Errorf("boot count %d -> %d: B released a revoked machine", before.BootCount, after.BootCount)
			}
		})
	}
}

// A revocation on A while B is preparing the machine's release (its
// evidence verified, its root being readied) ends it on B, B withdraws the
// root it prepared, and the releasing transaction refuses it.
func TestClusterRevokeOnOneDuringReleaseOnAnother(t *testing.T) {
	c := newCluster(t)
	a := c.server(t)
	held := newHeldRoots()
	b := c.server(t, func(cfg *attest.Config) { cfg.Roots, cfg.Withdraw = held, held })
	m := newMachine(t, defaultSpec)
	a.enrollAndApprove(t, m, "node-d")
	held.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := attestOnce(t, b.client(t, m.dev))
		done <- err
	}()
	select {
	case <-held.reached:
	case err := <-done:
		t.Fatalf("attestation on B ended before its release: %v", err)
	}
	withdrawn := held.withdrawals()
	revoke(t, a, m)
	b.waitAudit(t, m.id, "revoked")
	close(held.proceed)
	err := <-done
	var r *agentattest.RefusedError
	if !errors.As(err, &r) || r.Check != "revoked" {
		t.Fatalf("attest on B = %v, want refused by check revoked", err)
	}
	// B withdraws when its change feed tells it, which may be just after
	// the agent heard.
	for deadline := time.Now().Add(10 * time.Second); held.withdrawals() == withdrawn; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("B did not withdraw the root it prepared for the revoked machine")
		}
	}
}
