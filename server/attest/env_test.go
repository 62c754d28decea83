package attest_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	agenttpm "github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/test/tpmtest"
	"github.com/sealroot/sealroot/wire"
)

// testEnv is a running attestation server on 127.0.0.1 with real state.
type testEnv struct {
	addr      string
	roots     *x509.CertPool
	db        *store.DB
	mgr       *machines.Manager
	auditPath string
	audit     *audit.Log
	dir       string
	srv       *attest.Server
}

func newEnv(t *testing.T, mod ...func(*attest.Config)) *testEnv {
	t.Helper()
	return newEnvIn(t, t.TempDir(), mod...)
}

// newEnvIn is newEnv with its state (keys, database, audit log) in dir.
func newEnvIn(t *testing.T, dir string, mod ...func(*attest.Config)) *testEnv {
	t.Helper()
	return newEnvOn(t, dir, nil, mod...)
}

// newEnvOn is newEnvIn on the store st; nil opens a bbolt database in dir
// (testEnv.db, checked at the end), another store (etcd: a server of
// several sharing it) leaves db nil.
func newEnvOn(t *testing.T, dir string, st store.Store, mod ...func(*attest.Config)) *testEnv {
	t.Helper()
	if err := pki.Init(dir, pki.InitOptions{DNSNames: []string{"sealroot.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatalf("pki.Init: %v", err)
	}
	cert, roots := loadPKI(t, dir)
	var db *store.DB
	if st == nil {
		var err error
		if db, err = store.Open(filepath.Join(dir, "state.db"), testenv.Logger(t, "", hclog.Debug)); err != nil {
			t.Fatalf("store.Open: %v", err)
		}
		st = db
	}
	auditPath := filepath.Join(dir, "audit.log")
	al, err := audit.Open(auditPath)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(dir, "secrets.age.key"))
	if err != nil {
		t.Fatalf("secrets.LoadOrCreate: %v", err)
	}
	cfg := attest.Config{Certificate: cert, Store: st, Audit: al, Logger: testenv.Logger(t, "", hclog.Debug)}
	for _, m := range mod {
		m(&cfg)
	}
	mgr := machines.New(machines.Config{Store: st, Box: box, Audit: al, Logger: testenv.Logger(t, "", hclog.Debug),
		Withdraw: cfg.Withdraw})
	cfg.Secrets = mgr
	if _, ok := cfg.Files.(managerFiles); ok {
		cfg.Files = mgr
	}
	srv, err := attest.New(cfg)
	if err != nil {
		t.Fatalf("attest.New: %v", err)
	}
	mgr.SetAttestations(srv)
	addr, stop := serve(t, "", srv)
	t.Cleanup(func() {
		stop()
		al.Close()
		if db == nil {
			return
		}
		if err := db.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		db.Close()
	})
	return &testEnv{addr: addr, roots: roots, db: db, mgr: mgr, auditPath: auditPath, audit: al, dir: dir, srv: srv}
}

// testMachine is a simulator TPM that went through a synthetic measured boot.
type testMachine struct {
	tpm  *agenttpm.TPM
	keys *agenttpm.Keys
	boot *fakeboot.Boot
	log  []byte // the event log the device reports
	dev  *agentattest.TPMDevice
	id   string
	ext  fakeboot.Extender
	evs  []fakeboot.Event // the events behind log
	sim  *tpmtest.Sim
}

// reboot resets the TPM (same identity) and measures the same boot
// again, so that the machine may get a credential once more.
func (m *testMachine) reboot(t *testing.T) {
	t.Helper()
	if err := m.sim.Reboot(); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	if err := m.boot.Apply(m.ext); err != nil {
		t.Fatalf("apply boot: %v", err)
	}
	m.evs, m.log = slices.Clone(m.boot.Events), m.boot.Log
	keys, err := m.tpm.LoadKeys(context.Background()) // the reset unloaded them
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	t.Cleanup(func() { keys.Close() })
	m.keys, m.dev.Keys = keys, keys
}

// extend measures one more event into the TPM and the event log.
func (m *testMachine) extend(t *testing.T, e fakeboot.Event) {
	t.Helper()
	if e.Digest == nil {
		sum := sha256.Sum256(e.Data)
		e.Digest = sum[:]
	}
	if err := m.ext.ExtendPCR(e.PCR, e.Digest); err != nil {
		t.Fatalf("extend PCR %d: %v", e.PCR, err)
	}
	m.evs = append(m.evs, e)
	m.log = fakeboot.Encode(m.evs)
}

func newMachine(t *testing.T, spec fakeboot.Spec) *testMachine {
	t.Helper()
	sim := tpmtest.OpenSim(t)
	boot, err := fakeboot.Build(spec)
	if err != nil {
		t.Fatalf("fakeboot.Build: %v", err)
	}
	ext := tpmtest.ExtendDigest(sim)
	if err := boot.Apply(ext); err != nil {
		t.Fatalf("apply boot: %v", err)
	}
	tp := agenttpm.New(sim)
	keys, err := tp.LoadKeys(context.Background())
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	t.Cleanup(func() { keys.Close() })
	m := &testMachine{tpm: tp, keys: keys, boot: boot, log: boot.Log, id: wire.MachineID(keys.EKPublic),
		ext: ext, evs: slices.Clone(boot.Events), sim: sim}
	m.dev = &agentattest.TPMDevice{TPM: tp, Keys: keys, ReadEventLog: func() ([]byte, error) { return m.log, nil }}
	return m
}

func (e *testEnv) client(t *testing.T, dev agentattest.Device, mod ...func(*agentattest.Config)) *agentattest.Client {
	t.Helper()
	cfg := agentattest.Config{
		Servers:    []string{e.addr},
		ServerName: "sealroot.test",
		Roots:      e.roots,
		Device:     dev,
		Logger:     testenv.Logger(t, "", hclog.Debug),
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := agentattest.New(cfg)
	if err != nil {
		t.Fatalf("attest client: %v", err)
	}
	return c
}

// lastAudit returns the newest audit entry for a machine.
func (e *testEnv) lastAudit(t *testing.T, id string) audit.Entry {
	t.Helper()
	entries, err := audit.ReadAll(e.auditPath)
	if err != nil {
		t.Fatalf("audit.ReadAll: %v", err)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].MachineID == id {
			return entries[i]
		}
	}
	t.Fatalf("no audit entry for machine %s", id)
	return audit.Entry{}
}

// wantRefused checks that err is a refusal naming check, and that the
// audit log recorded the same check.
func (e *testEnv) wantRefused(t *testing.T, err error, id, check string) {
	t.Helper()
	var r *agentattest.RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("attest = %v, want a refusal by check %q", err, check)
	}
	if r.Check != check {
		t.Fatalf("refused by check %q (%s), want %q", r.Check, r.Reason, check)
	}
	if id == "" {
		return
	}
	if a := e.lastAudit(t, id); a.Outcome != "refused" || a.Check != check {
		t.Fatalf("audit = %+v, want outcome refused, check %q", a, check)
	}
}

// loadPKI loads the server certificate in the PKI directory dir and a
// pool of its CA, which agents pin.
func loadPKI(t *testing.T, dir string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := pki.LoadServer(dir)
	if err != nil {
		t.Fatalf("pki.LoadServer: %v", err)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatalf("pki.LoadCA: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return cert, roots
}

// serve runs srv on a UDP socket on 127.0.0.1, and each of more beside
// it with the same context, until stop; the caller runs stop (at cleanup,
// before closing what srv uses).
func serve(t *testing.T, name string, srv *attest.Server, more ...func(context.Context) error) (addr string, stop func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(what string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("%s %s: %v", name, what, err)
			}
		}()
	}
	run("Serve", func(ctx context.Context) error { return srv.Serve(ctx, pc) })
	for _, f := range more {
		run("beside Serve", f)
	}
	var once sync.Once
	return pc.LocalAddr().String(), func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			pc.Close()
		})
	}
}
