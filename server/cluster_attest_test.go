package server

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/audit/audittest"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/wire"
)

// member is one server of a test cluster, built as `sealroot serve`
// builds it.
type member struct {
	target loadgen.Target
	admin  *client.Client
	dir    string
	stop   func() // stops the server; also run at cleanup
}

// startMember starts a server named name on etcd c under prefix. Every
// member shares the first one's PKI (the CA agents pin, a certificate for
// "localhost") and age identity, copied from shareFrom ("" for the first).
// limits, if given, replaces the default limits.
func startMember(t testing.TB, c *etcdtest.Cluster, prefix, name, shareFrom string, limits ...*config.LimitsConfig) *member {
	t.Helper()
	return startMemberWith(t, c, prefix, name, shareFrom, func(_ string, cfg *config.Config) {
		if len(limits) > 0 {
			cfg.Limits = limits[0]
		}
	})
}

// startMemberWith is startMember with configure called on the member's
// state directory (its PKI in place) and configuration before New.
func startMemberWith(t testing.TB, c *etcdtest.Cluster, prefix, name, shareFrom string, configure func(dir string, cfg *config.Config)) *member {
	t.Helper()
	dir := t.TempDir()
	if shareFrom == "" {
		if err := pki.Init(PKIDir(dir), pki.InitOptions{}); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := os.CopyFS(PKIDir(dir), os.DirFS(PKIDir(shareFrom))); err != nil {
			t.Fatal(err)
		}
		key, err := os.ReadFile(filepath.Join(shareFrom, "secrets.age.key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "secrets.age.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.LoadCA(filepath.Join(PKIDir(dir), pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := config.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"),
		Store: &config.StoreConfig{Backend: config.StoreEtcd, Endpoints: c.Endpoints, Prefix: prefix, ServerName: name}}
	configure(dir, &cfg)
	srv, err := New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatalf("New %s: %v", name, err)
	}
	addrs, err := srv.Listen()
	if err != nil {
		cancel()
		t.Fatalf("Listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve %s = %v", name, err)
			}
			srv.Close()
		})
	}
	t.Cleanup(stop)
	<-srv.Ready()
	return &member{target: loadgen.Target{Addr: addrs.Attest.String(), ServerName: "localhost", Roots: roots},
		admin: client.New(addrs.Admin), dir: dir, stop: stop}
}

// Two servers built as `sealroot serve` builds them on one etcd: a
// machine approved on A attests on B at once, and B, which readied that
// first boot, is its home (machine show on A); revoked on A while B holds
// its exchange between challenge and evidence, B ends the exchange (its
// audit log says so while the agent waits), and the agent is refused.
func TestServersShareEtcdAttest(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 3)
	prefix := etcdtest.Prefix(t)
	a := startMember(t, c, prefix, "boot-a", "")
	b := startMember(t, c, prefix, "boot-b", a.dir)
	agents, err := loadgen.NewAgents(ctx, rand.Reader, 1, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := loadgen.Enroll(ctx, a.target, a.admin, agents); err != nil { // pending on A, approved on A
		t.Fatal(err)
	}
	onB, err := b.target.Client(agents[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onB.AttestOnce(ctx); err != nil {
		t.Fatalf("attest on B of a machine approved on A = %v, want a credential", err)
	}
	id := wire.MachineID(agents[0].TPM.EKPublic())
	// B readied its first boot: B is its root's home, as A shows it.
	if m, err := a.admin.Machine(ctx, id); err != nil || m.Home != "boot-b" {
		t.Fatalf("machine on A = %+v, %v; want home boot-b", m, err)
	}
	// The boot history names the server that decided by its
	// store.server_name (both members run on this one host).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err := a.admin.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if last := m.LastAttempt(); last != nil && last.Outcome == "allowed" {
			if last.Server != "boot-b" {
				t.Fatalf("boot history: allowed by %q, want boot-b", last.Server)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boot history on A: no allowed attempt (%+v)", m.History)
		}
	}

	held := loadgen.NewHeldAgent(agents[0])
	heldOnB, err := agentattest.New(agentattest.Config{Servers: []string{b.target.Addr}, ServerName: "localhost",
		Roots: b.target.Roots, Device: held, NoUnseal: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := heldOnB.AttestOnce(actx)
		done <- err
	}()
	defer held.Proceed()
	select {
	case <-held.Reached():
	case err := <-done:
		t.Fatalf("attestation on B ended before its evidence: %v", err)
	}
	if _, err := a.admin.Revoke(ctx, id, "stolen"); err != nil {
		t.Fatal(err)
	}
	audittest.WaitRefused(t, filepath.Join(b.dir, "audit.log"), id, "revoked")
	held.Proceed()
	err = <-done
	var r *agentattest.RefusedError
	if !errors.As(err, &r) || r.Check != "revoked" {
		t.Fatalf("attest on B = %v, want refused by check revoked", err)
	}
	if m, err := b.admin.Machine(ctx, id); err != nil || m.State != api.StateRevoked {
		t.Fatalf("machine on B = %v, %v; want revoked", m, err)
	}
}
