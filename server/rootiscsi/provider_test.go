package rootiscsi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

const (
	idA = "aaaaaaaa11111111111111111111111111111111111111111111111111111111"
	idB = "bbbbbbbb22222222222222222222222222222222222222222222222222222222"
)

// importImage imports a tiny tree as name into a new store.
func newImages(t *testing.T, names ...string) (*image.Store, map[string]*image.Image) {
	t.Helper()
	testenv.LookTool(t, "mkfs.ext4")
	testenv.LookTool(t, "debugfs")
	st, err := image.Open(image.Config{Dir: t.TempDir(), Logger: testenv.Logger(t, "", hclog.Debug)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*image.Image{}
	for _, name := range names {
		src := filepath.Join(t.TempDir(), "src")
		if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := st.Import(context.Background(), name, src, nil)
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		out[name] = im
	}
	t.Cleanup(func() { // GC clears the immutable flag so TempDir can go
		for _, name := range names {
			st.Remove(name)
		}
		st.GC(nil)
	})
	return st, out
}

type env struct {
	p      *rootiscsi.Provider
	addr   string
	vols   *volume.Manager
	volDir string
	images map[string]*image.Image
	cfg    rootiscsi.Config
}

// startISCSI serves srv on a loopback port until the test ends.
func startISCSI(t *testing.T, srv *iscsi.Server, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("iscsi Serve: %v", err)
		}
	})
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.LookTool(t, "iscsi-readcapacity16")
	images, ims := newImages(t, "tiny", "other")
	volDir := t.TempDir()
	vols, err := volume.New(volume.Config{Dir: volDir, Bases: images, Logger: testenv.Logger(t, "", hclog.Debug)})
	if err != nil {
		t.Fatal(err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), "key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &iscsi.Server{Logger: testenv.Logger(t, "", hclog.Debug)}
	startISCSI(t, srv, ln)
	cfg := rootiscsi.Config{Images: images, Volumes: vols, Plain: srv, PlainPortal: ln.Addr().String(),
		StateDir: t.TempDir(), Box: box, Logger: testenv.Logger(t, "", hclog.Debug)}
	p, err := rootiscsi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &env{p: p, addr: ln.Addr().String(), vols: vols, volDir: volDir, images: ims, cfg: cfg}
}

func iscsiMachine(id, img string) *store.Machine {
	return &store.Machine{ID: id, State: store.StateApproved, LastAddress: "127.0.0.1:40000",
		Root: wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: img}}}
}

// login is one initiator's view: the target it asks for, its name and
// the credentials it presents.
type login struct {
	addr, target, initiator string
	user, secret            string
	targetUser, targetPass  string
}

func loginFrom(addr string, plan wire.RootPlan, s map[string][]byte) login {
	return login{addr: addr, target: plan.Params[wire.ISCSITarget], initiator: plan.Params[wire.ISCSIInitiator],
		user: string(s[wire.SecretCHAPUser]), secret: string(s[wire.SecretCHAPSecret]),
		targetUser: string(s[wire.SecretCHAPTargetUser]), targetPass: string(s[wire.SecretCHAPTargetSecret])}
}

// capacity runs libiscsi's iscsi-readcapacity16 -s and returns the size
// in bytes, or an error when the login is refused.
func (l login) capacity(t *testing.T) (int64, error) {
	t.Helper()
	url := "iscsi://" + l.user + "%" + l.secret + "@" + l.addr + "/" + l.target + "/0?target_user=" +
		l.targetUser + "&target_password=" + l.targetPass
	out, err := exec.Command(testenv.LookTool(t, "iscsi-readcapacity16"), "-i", l.initiator, "-s", url).CombinedOutput()
	if err != nil {
		return 0, errors.New(strings.TrimSpace(string(out)))
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

func (e *env) prepare(t *testing.T, m *store.Machine) (wire.RootPlan, map[string][]byte) {
	t.Helper()
	plan, sec, err := e.p.Prepare(context.Background(), request(m, nil))
	if err != nil {
		t.Fatalf("Prepare(%s): %v", m.ID[:8], err)
	}
	return plan, sec
}

func (e *env) login(t *testing.T, m *store.Machine) login {
	t.Helper()
	plan, sec := e.prepare(t, m)
	return loginFrom(e.addr, plan, sec)
}

func TestPlanAndSecrets(t *testing.T) {
	e := newEnv(t)
	m := iscsiMachine(idA, "tiny")
	m.Root.Init = "/sbin/init"
	plan, sec := e.prepare(t, m)
	want := map[string]string{
		wire.ISCSIPortal: e.addr, wire.ISCSITarget: "iqn.2026-11.org.sealroot:aaaaaaaa11111111",
		wire.ISCSIInitiator: "iqn.2026-11.org.sealroot.agent:aaaaaaaa11111111", wire.ISCSILUN: "0",
		wire.ISCSIFSType: "ext4", wire.ImageParam: "tiny",
	}
	if plan.Kind != wire.RootISCSI || plan.Init != "/sbin/init" || len(plan.Params) != len(want) {
		t.Fatalf("plan = %+v, want kind iscsi, init kept, params %v", plan, want)
	}
	for k, v := range want {
		if plan.Params[k] != v {
			t.Errorf("plan param %s = %q, want %q", k, plan.Params[k], v)
		}
	}
	seen := map[string]bool{}
	for _, name := range []string{wire.SecretCHAPUser, wire.SecretCHAPSecret, wire.SecretCHAPTargetUser, wire.SecretCHAPTargetSecret} {
		v := string(sec[name])
		if len(v) != 32 || strings.Trim(v, "0123456789abcdef") != "" || seen[v] {
			t.Errorf("secret %s = %q, want 128 random bits in 32 distinct hex digits", name, v)
		}
		seen[v] = true
	}
	if len(sec) != 4 {
		t.Errorf("secrets %d, want the 4 CHAP values", len(sec))
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	planA, secA := e.prepare(t, iscsiMachine(idA, "tiny"))
	planB, secB := e.prepare(t, iscsiMachine(idB, "tiny"))
	a, b := loginFrom(e.addr, planA, secA), loginFrom(e.addr, planB, secB)
	if a.target == b.target {
		t.Fatalf("machines A and B share target %s", a.target)
	}
	size := e.images["tiny"].Size

	wrongSecret := a
	wrongSecret.secret = strings.Repeat("0", 32)
	wrongTarget := a
	wrongTarget.targetPass = strings.Repeat("0", 32)
	bIntoA := b
	bIntoA.target = a.target
	bSecretsOnA := a // A's names, B's CHAP credentials
	bSecretsOnA.user, bSecretsOnA.secret = b.user, b.secret
	bNameIntoA := a
	bNameIntoA.initiator = b.initiator
	tests := []struct {
		name string
		l    login
		ok   bool
	}{
		{"right_credentials", a, true},
		{"machine_b_own_target", b, true},
		{"wrong_secret", wrongSecret, false},
		{"wrong_target_secret", wrongTarget, false},
		{"machine_b_credentials_on_a", bIntoA, false},
		{"machine_b_initiator_name_on_a", bNameIntoA, false},
		{"machine_b_chap_secrets_on_a", bSecretsOnA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.l.capacity(t)
			if !tt.ok {
				if err == nil {
					t.Fatalf("login succeeded (capacity %d), want refused", got)
				}
				return
			}
			if err != nil || got != size {
				t.Fatalf("capacity = %d, %v; want %d (the image size)", got, err, size)
			}
		})
	}
}

func TestPlainAddressChecked(t *testing.T) {
	e := newEnv(t)
	m := iscsiMachine(idA, "tiny")
	m.LastAddress = "127.0.0.2:40000" // attested from elsewhere
	plan, sec := e.prepare(t, m)
	if _, err := loginFrom(e.addr, plan, sec).capacity(t); err == nil {
		t.Fatal("login from 127.0.0.1 to a target admitting 127.0.0.2 succeeded")
	}
	m.LastAddress = "not an address"
	if _, _, err := e.p.Prepare(context.Background(), request(m, nil)); !errors.Is(err, rootiscsi.ErrAddress) {
		t.Fatalf("Prepare with a bad address = %v, want ErrAddress", err)
	}
}

func TestSecondReleaseRotates(t *testing.T) {
	e := newEnv(t)
	m := iscsiMachine(idA, "tiny")
	old := e.login(t, m)
	if _, err := old.capacity(t); err != nil {
		t.Fatalf("first boot login: %v", err)
	}
	fresh := e.login(t, m)
	if fresh.secret == old.secret || fresh.user == old.user || fresh.targetPass == old.targetPass {
		t.Fatal("second release reused a credential")
	}
	if _, err := old.capacity(t); err == nil {
		t.Fatal("the previous boot's credentials still log in")
	}
	if _, err := fresh.capacity(t); err != nil {
		t.Fatalf("new credentials: %v", err)
	}
}

func TestBaseMismatchRefused(t *testing.T) {
	e := newEnv(t)
	m := iscsiMachine(idA, "tiny")
	e.prepare(t, m)
	if err := e.p.Release(context.Background(), idA); err != nil {
		t.Fatal(err)
	}
	// Swap the volume's base record for another image's.
	metaPath := filepath.Join(e.volDir, "machines", idA, "volume.json")
	b, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta volume.Meta
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	meta.Base = e.images["other"].Digest
	if b, err = json.Marshal(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.p.Prepare(context.Background(), request(m, nil))
	if !errors.Is(err, volume.ErrBaseMismatch) {
		t.Fatalf("Prepare over a swapped base = %v, want ErrBaseMismatch", err)
	}
	if e.p.Serving(idA) {
		t.Fatal("a volume with the wrong base is served")
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	noImage := iscsiMachine(idA, "")
	if _, _, err := e.p.Prepare(context.Background(), request(noImage, nil)); !errors.Is(err, rootiscsi.ErrNoImage) {
		t.Errorf("no image: %v, want ErrNoImage", err)
	}
	unknown := iscsiMachine(idA, "missing")
	if _, _, err := e.p.Prepare(context.Background(), request(unknown, nil)); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("unknown image: %v, want image.ErrNotFound", err)
	}
	tunnelled := iscsiMachine(idA, "tiny")
	if _, _, err := e.p.Prepare(context.Background(), request(tunnelled, &wire.TunnelPlan{ServerAddr: "10.0.0.1"})); !errors.Is(err, rootiscsi.ErrNoPortal) {
		t.Errorf("tunnelled without a tunnel listener: %v, want ErrNoPortal", err)
	}
}

func TestRestoreAfterRestart(t *testing.T) {
	e := newEnv(t)
	l := e.login(t, iscsiMachine(idA, "tiny"))
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.capacity(t); err == nil {
		t.Fatal("login succeeded after Close")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &iscsi.Server{Logger: testenv.Logger(t, "", hclog.Debug)}
	startISCSI(t, srv, ln)
	cfg := e.cfg
	cfg.Plain, cfg.PlainPortal = srv, ln.Addr().String()
	p2, err := rootiscsi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	if n, err := p2.Restore(context.Background()); n != 1 || err != nil {
		t.Fatalf("Restore = %d, %v; want 1 target", n, err)
	}
	l.addr = ln.Addr().String()
	if got, err := l.capacity(t); err != nil || got != e.images["tiny"].Size {
		t.Fatalf("login with the boot's credentials after restart: %d, %v", got, err)
	}
	if err := p2.Release(context.Background(), idA); err != nil {
		t.Fatal(err)
	}
	if n, _ := p2.Restore(context.Background()); n != 0 {
		t.Fatalf("Restore after Release brought back %d targets", n)
	}
}

// peers maps loopback source addresses to machines, as the tunnel maps
// tunnel addresses.
type peers map[string]string

func (p peers) PeerAddr(remote net.Addr) (string, bool) {
	host, _, err := net.SplitHostPort(remote.String())
	id, ok := p[host]
	return id, ok && err == nil
}

func TestTunnelledAdmitsOnlyThePeer(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &iscsi.Server{Logger: testenv.Logger(t, "", hclog.Debug)}
	startISCSI(t, srv, ln)
	owner := peers{"127.0.0.1": idA}
	cfg := e.cfg
	cfg.Plain, cfg.StateDir = nil, ""
	cfg.Tunnelled, cfg.Peers, cfg.TunnelPortal = srv, owner, ln.Addr().String()
	p, err := rootiscsi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	tunnel := &wire.TunnelPlan{ServerAddr: "127.0.0.1"}
	prep := func(id string) login {
		m := iscsiMachine(id, "tiny")
		m.LastAddress = "" // unused when tunnelled
		plan, sec, err := p.Prepare(context.Background(), request(m, tunnel))
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if plan.Params[wire.ISCSIPortal] != cfg.TunnelPortal {
			t.Fatalf("portal %q, want the tunnel listener %s", plan.Params[wire.ISCSIPortal], cfg.TunnelPortal)
		}
		return loginFrom(cfg.TunnelPortal, plan, sec)
	}
	a, b := prep(idA), prep(idB)
	if _, err := a.capacity(t); err != nil {
		t.Fatalf("the tunnel peer of A cannot log in to A: %v", err)
	}
	if _, err := b.capacity(t); err == nil {
		t.Fatal("B logged in from A's tunnel address with B's own credentials")
	}
	delete(owner, "127.0.0.1") // A's peer removed
	if _, err := a.capacity(t); err == nil {
		t.Fatal("A logged in without a tunnel peer")
	}
}

func TestVolatileServesTheBaseReadOnly(t *testing.T) {
	e := newEnv(t)
	volatileMachine := func(id string) *store.Machine {
		m := iscsiMachine(id, "tiny")
		m.Root = wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "tiny", wire.VolatileVia: wire.ViaISCSI}}
		return m
	}
	planA, secA := e.prepare(t, volatileMachine(idA))
	planB, secB := e.prepare(t, volatileMachine(idB))
	if planA.Kind != wire.RootVolatile || planA.Params[wire.VolatileVia] != wire.ViaISCSI || planA.Params[wire.ISCSITarget] == planB.Params[wire.ISCSITarget] {
		t.Fatalf("plans = %+v, %+v; want volatile via iscsi, one target each", planA, planB)
	}
	for _, l := range []login{loginFrom(e.addr, planA, secA), loginFrom(e.addr, planB, secB)} {
		if size, err := l.capacity(t); err != nil || size != e.images["tiny"].Size {
			t.Fatalf("capacity = %d, %v; want the base's %d bytes", size, err, e.images["tiny"].Size)
		}
	}
	if _, err := e.vols.Meta(idA); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("volume of a volatile machine: %v; want none (the base itself is served)", err)
	}
	// Back to a persistent root: the machine gets its own volume.
	e.prepare(t, iscsiMachine(idA, "tiny"))
	if _, err := e.vols.Meta(idA); err != nil {
		t.Fatalf("volume after switching to kind iscsi: %v", err)
	}
	// A volatile root over NFS is not this provider's: the roots service
	// passes it through and withdraws the target.
	m := volatileMachine(idB)
	m.Root.Params[wire.VolatileVia] = wire.RootNFS
	rs := roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindISCSI: e.p, roots.KindVolatileISCSI: e.p}})
	if plan, _, err := rs.Prepare(context.Background(), request(m, nil)); err != nil || plan.Params[wire.ISCSITarget] != "" || e.p.Serving(idB) {
		t.Fatalf("volatile via nfs: plan %+v, serving %v; want passed through and withdrawn", plan, e.p.Serving(idB))
	}
}

var reAsserts = regexp.MustCompile(`asserts\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

// readOnlyChecks runs libiscsi's ReadOnly suite (every medium-modifying
// command must fail with DATA PROTECT; it skips on a writable unit) and
// returns how many of its asserts ran and failed.
func readOnlyChecks(t *testing.T, l login) (ran, failed int) {
	t.Helper()
	url := "iscsi://" + l.user + "%" + l.secret + "@" + l.addr + "/" + l.target + "/0?target_user=" +
		l.targetUser + "&target_password=" + l.targetPass
	out, _ := exec.Command(testenv.LookTool(t, "iscsi-test-cu"), "--dataloss", "-i", l.initiator, "-t", "ALL.ReadOnly", url).CombinedOutput()
	m := reAsserts.FindSubmatch(out)
	if m == nil {
		t.Fatalf("iscsi-test-cu printed no summary:\n%s", out)
	}
	ran, _ = strconv.Atoi(string(m[2]))
	failed, _ = strconv.Atoi(string(m[4]))
	return ran, failed
}

// TestVolatileBaseRefusesWrites writes through a volatile machine's
// target with every command that modifies a medium: each must fail with
// DATA PROTECT, and the shared base must keep its digest. The same suite
// on a persistent machine's writable target skips, which shows it checks
// write protection.
func TestVolatileBaseRefusesWrites(t *testing.T) {
	e := newEnv(t)
	m := iscsiMachine(idA, "tiny")
	m.Root = wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "tiny", wire.VolatileVia: wire.ViaISCSI}}
	if ran, failed := readOnlyChecks(t, e.login(t, m)); ran < 10 || failed != 0 {
		t.Fatalf("ReadOnly suite on the volatile target: %d asserts ran, %d failed; want every write refused", ran, failed)
	}
	if err := e.cfg.Images.(*image.Store).Verify(e.images["tiny"].Digest); err != nil {
		t.Fatalf("base after the write attempts: %v", err)
	}
	if ran, _ := readOnlyChecks(t, e.login(t, iscsiMachine(idB, "tiny"))); ran >= 10 {
		t.Fatalf("ReadOnly suite ran %d asserts on a writable target; want it skipped", ran)
	}
}

// request is the root request of machine m's release.
func request(m *store.Machine, tunnel *wire.TunnelPlan) roots.Request {
	return roots.Request{MachineID: m.ID, Plan: m.Root, RemoteAddr: m.LastAddress, Tunnel: tunnel}
}
