package attest_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"

	"github.com/hashicorp/go-hclog"
)

// rootEnv is an iSCSI root provider over a real image store, volume
// manager and iSCSI target on 127.0.0.1.
type rootEnv struct {
	p      *rootiscsi.Provider
	portal string
	image  *image.Image
}

func newRootEnv(t *testing.T, mod ...func(*rootiscsi.Config)) *rootEnv {
	t.Helper()
	testenv.LookTool(t, "mkfs.ext4")
	testenv.LookTool(t, "iscsi-readcapacity16")
	images, err := image.Open(image.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "sbin"), 0o755)
	if err := os.WriteFile(filepath.Join(src, "sbin", "init"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	im, err := images.Import(context.Background(), "tiny", src, nil)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	t.Cleanup(func() { images.Remove("tiny"); images.GC(nil) })
	vols, err := volume.New(volume.Config{Dir: t.TempDir(), Bases: images})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &iscsi.Server{Logger: testenv.Logger(t, "", hclog.Debug)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	cfg := rootiscsi.Config{Images: images, Volumes: vols, Plain: srv,
		PlainPortal: ln.Addr().String(), Logger: testenv.Logger(t, "", hclog.Debug)}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := rootiscsi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		p.Close()
	})
	return &rootEnv{p: p, portal: ln.Addr().String(), image: im}
}

// withRoots serves iSCSI roots from p, through the roots service that
// also withdraws them.
func withRoots(p roots.Provider) func(*attest.Config) {
	return func(c *attest.Config) {
		rs := roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindISCSI: p, roots.KindVolatileISCSI: p}})
		c.Roots, c.Withdraw = rs, rs
	}
}

func setRoot(t *testing.T, e *testEnv, id string, root wire.RootPlan) {
	t.Helper()
	_, err := e.db.UpdateMachine(context.Background(), id, func(m *store.Machine) error {
		m.Root = root
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rootCapacity logs in to the iSCSI root of plan with a credential's
// secrets (libiscsi's iscsi-readcapacity16) and returns its size.
func rootCapacity(t *testing.T, plan wire.RootPlan, sec map[string][]byte) (int64, error) {
	t.Helper()
	url := "iscsi://" + string(sec[wire.SecretCHAPUser]) + "%" + string(sec[wire.SecretCHAPSecret]) +
		"@" + plan.Params[wire.ISCSIPortal] + "/" + plan.Params[wire.ISCSITarget] + "/0?target_user=" +
		string(sec[wire.SecretCHAPTargetUser]) + "&target_password=" + string(sec[wire.SecretCHAPTargetSecret])
	out, err := exec.Command(testenv.LookTool(t, "iscsi-readcapacity16"), "-s", "-i", plan.Params[wire.ISCSIInitiator], url).CombinedOutput()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

func TestISCSIRootInCredential(t *testing.T) {
	r := newRootEnv(t)
	e := newEnv(t, withRoots(r.p))
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-i")
	setRoot(t, e, m.id, wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "tiny"}})
	if err := e.mgr.SetSecret(context.Background(), "node-i", "ssh_host_key", []byte("operator secret")); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.SetSecret(context.Background(), "node-i", wire.SecretCHAPSecret, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	res, err := attestOnce(t, e.client(t, m.dev))
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	p := res.Payload
	if p.Root.Kind != wire.RootISCSI || p.Root.Params[wire.ISCSIPortal] != r.portal ||
		p.Root.Params[wire.ISCSITarget] != rootiscsi.TargetIQN(m.id) ||
		p.Root.Params[wire.ISCSIInitiator] != rootiscsi.InitiatorIQN(m.id) {
		t.Fatalf("root plan = %+v, want portal %s and the machine's target and initiator", p.Root, r.portal)
	}
	if string(p.Secrets["ssh_host_key"]) != "operator secret" {
		t.Errorf("operator secret lost: %q", p.Secrets["ssh_host_key"])
	}
	for _, name := range []string{wire.SecretCHAPUser, wire.SecretCHAPSecret, wire.SecretCHAPTargetUser, wire.SecretCHAPTargetSecret} {
		if len(p.Secrets[name]) < 32 {
			t.Errorf("secret %s = %q, want a fresh CHAP value", name, p.Secrets[name])
		}
	}
	// The delivered credentials log in to the machine's own target.
	capacity := func() (int64, error) { return rootCapacity(t, p.Root, p.Secrets) }
	if got, err := capacity(); err != nil || got != r.image.Size {
		t.Fatalf("login with the credential's secrets: capacity %d, %v; want %d", got, err, r.image.Size)
	}
	if _, err := e.mgr.Revoke(context.Background(), "node-i", "stolen"); err != nil {
		t.Fatal(err)
	}
	if r.p.Serving(m.id) {
		t.Fatal("revoked machine still has a target")
	}
	if _, err := capacity(); err == nil {
		t.Fatal("revoked machine's credentials still log in")
	}
}

func TestISCSIRootFailureRefuses(t *testing.T) {
	r := newRootEnv(t)
	e := newEnv(t, withRoots(r.p))
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-j")
	setRoot(t, e, m.id, wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "missing"}})
	_, err := attestOnce(t, e.client(t, m.dev))
	e.wantRefused(t, err, m.id, "root")
	if r.p.Serving(m.id) {
		t.Fatal("refused machine has a target")
	}
}

func TestGroupRootInCredential(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "kiosk-1")
	ctx := context.Background()
	setRoot(t, e, m.id, wire.RootPlan{Kind: wire.RootNFS, Params: map[string]string{"image": "own"}})
	kiosk := wire.RootPlan{Kind: wire.RootVolatile, Init: "/sbin/kiosk", Params: map[string]string{"image": "kiosk"}}
	if err := e.db.PutGroup(ctx, &store.Group{Name: "kiosks", Root: kiosk}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.UpdateMachine(ctx, m.id, func(mc *store.Machine) error { mc.Group = "kiosks"; return nil }); err != nil {
		t.Fatal(err)
	}
	res, err := attestOnce(t, e.client(t, m.dev))
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	if p := res.Payload; p.Root.Kind != wire.RootVolatile || p.Root.Init != "/sbin/kiosk" || p.Root.Params["image"] != "kiosk" {
		t.Fatalf("root in credential = %+v; want the group's", p.Root)
	}
}
