package machines

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	agentiscsi "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// captureEnv is a machine manager over a real image store, volumes and
// an iSCSI root provider serving on loopback.
type captureEnv struct {
	*env
	images *image.Store
	vols   *volume.Manager
	p      *rootiscsi.Provider
	roots  *roots.Service
	addr   string
	base   *image.Image
	// after is how far the roots' clock is ahead: boot moves it past
	// the boot grace, as if the machine had powered off long ago.
	after atomic.Int64
}

func newCaptureEnv(t *testing.T) *captureEnv {
	t.Helper()
	testenv.RequireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	e := newEnv(t)
	logger := testenv.Logger(t, "", hclog.Debug)
	imgDir := t.TempDir()
	images, err := image.Open(image.Config{Dir: imgDir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // GC clears the immutable flags so TempDir can go
		ims, _ := images.List()
		for _, im := range ims {
			images.Remove(im.Name)
		}
		images.GC(nil)
	})
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("template\n"), 0o644)
	base, err := images.Import(context.Background(), "debian", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := volume.New(volume.Config{Dir: t.TempDir(), Bases: images, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &iscsi.Server{Logger: logger}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	p, err := rootiscsi.New(rootiscsi.Config{Images: images, Volumes: vols, Plain: srv, PlainPortal: ln.Addr().String(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := &captureEnv{env: e, images: images, vols: vols, p: p, addr: ln.Addr().String(), base: base}
	c.roots = roots.New(roots.Config{Providers: map[string]roots.Provider{roots.KindISCSI: p},
		Now: func() time.Time { return time.Now().Add(time.Duration(c.after.Load())) }})
	e.mgr = New(Config{Store: e.st, Audit: e.log, Images: images, Volumes: vols, Roots: c.roots, Logger: logger})
	return c
}

// boot adds machine id with an iSCSI root of the base and releases it,
// as attestation does: the volume is made and its target served.
func (c *captureEnv) boot(t *testing.T, id, name string) (wire.RootPlan, map[string][]byte) {
	t.Helper()
	root := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}}
	if err := c.st.CreateMachine(context.Background(), &store.Machine{ID: id, Name: name, State: store.StateApproved, Root: root}); err != nil {
		t.Fatal(err)
	}
	plan, sec, err := c.roots.Prepare(context.Background(), roots.Request{MachineID: id, Plan: root, RemoteAddr: "127.0.0.1:40000"})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	c.after.Add(int64(roots.DefaultBootGrace))
	return plan, sec
}

// login logs in to the machine's target as the agent does and holds the
// session until the returned func is called.
func (c *captureEnv) login(t *testing.T, plan wire.RootPlan, s map[string][]byte) func() {
	t.Helper()
	conn, err := net.Dial("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = agentiscsi.Login(context.Background(), conn, agentiscsi.Config{
		InitiatorName: plan.Params[wire.ISCSIInitiator], TargetName: plan.Params[wire.ISCSITarget],
		ISID: [6]byte{0x80, 0, 0, 0, 0, 1},
		CHAP: &pdu.CHAP{User: string(s[wire.SecretCHAPUser]), Secret: string(s[wire.SecretCHAPSecret]),
			TargetUser: string(s[wire.SecretCHAPTargetUser]), TargetSecret: string(s[wire.SecretCHAPTargetSecret])},
	})
	if err != nil {
		conn.Close()
		t.Fatalf("login: %v", err)
	}
	return func() { conn.Close() }
}

// edit changes the machine's closed volume with a debugfs -w script, as
// the machine would have written to its root.
func (c *captureEnv) edit(t *testing.T, id, script string) {
	t.Helper()
	if err := c.roots.Release(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	vol, err := c.vols.Open(id, c.base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	buf := make([]byte, vol.Size())
	if _, err := vol.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "fs.img")
	os.WriteFile(tmp, buf, 0o600)
	cmd := exec.Command("debugfs", "-w", "-f", "-", tmp)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	buf, _ = os.ReadFile(tmp)
	if _, err := vol.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
}

func (c *captureEnv) lastEntries(t *testing.T, n int) string {
	t.Helper()
	es := c.entries(t)
	var out []string
	for _, e := range es[max(0, len(es)-n):] {
		out = append(out, e.Action+" "+e.Outcome)
	}
	return strings.Join(out, ", ")
}

func TestCaptureImage(t *testing.T) {
	ctx := context.Background()
	c := newCaptureEnv(t)
	c.boot(t, idA, "template")
	c.edit(t, idA, "write /dev/null etc/prepared\nrm etc/hostname\n")
	// The machine boots again and is running: its session refuses capture.
	plan, sec := c.bootAgain(t, idA)
	end := c.login(t, plan, sec)
	_, err := c.mgr.CaptureImage(ctx, "prepared", "template")
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "power it off") {
		t.Fatalf("capture of a running machine: %v, want ErrConflict saying to power it off", err)
	}
	if got := c.lastEntries(t, 2); got != "image-capture ok, image-capture refused" {
		t.Errorf("audit of the refused capture: %s", got)
	}
	if !c.p.Serving(idA) {
		t.Error("refused capture withdrew the running machine's root")
	}
	if _, err := c.images.Get("prepared"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("refused capture named an image: %v", err)
	}
	// Powered off: the session ends; the capture takes the root.
	end()
	var im *api.Image
	deadline := time.Now().Add(10 * time.Second)
	for {
		im, err = c.mgr.CaptureImage(ctx, "prepared", "template")
		if err == nil || !errors.Is(err, api.ErrConflict) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("capture of a powered-off machine: %v", err)
	}
	if got := c.lastEntries(t, 1); got != "image-capture ok" {
		t.Errorf("audit of the capture: %s", got)
	}
	if c.p.Serving(idA) {
		t.Error("machine's root still served after the capture")
	}
	tree, err := c.images.TreePath(im.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tree, "etc", "prepared")); err != nil {
		t.Errorf("the machine's write is not in the image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "etc", "hostname")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the machine's removal is not in the image: %v", err)
	}
	// The captured image is a root for other machines.
	if _, err := c.mgr.SetRoot(ctx, "template", wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "prepared"}}); err != nil {
		t.Errorf("captured image as a root: %v", err)
	}
}

// bootAgain releases the machine's root again, as a new boot does.
func (c *captureEnv) bootAgain(t *testing.T, id string) (wire.RootPlan, map[string][]byte) {
	t.Helper()
	root := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}}
	plan, sec, err := c.roots.Prepare(context.Background(), roots.Request{MachineID: id, Plan: root, RemoteAddr: "127.0.0.1:40000"})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	c.after.Add(int64(roots.DefaultBootGrace))
	return plan, sec
}

func TestCaptureImageRefusals(t *testing.T) {
	ctx := context.Background()
	c := newCaptureEnv(t)
	c.boot(t, idA, "dirty")
	// A machine given its root just now, not logged in yet, is booting.
	c.bootAgain(t, idA)
	c.after.Add(-int64(roots.DefaultBootGrace))
	if _, err := c.mgr.CaptureImage(ctx, "x", "dirty"); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "is booting") {
		t.Errorf("capture while booting: %v, want ErrConflict saying it is booting", err)
	}
	if !c.p.Serving(idA) {
		t.Error("the booting machine's target was withdrawn")
	}
	c.after.Add(int64(roots.DefaultBootGrace))
	c.edit(t, idA, "feature needs_recovery\n")
	_, err := c.mgr.CaptureImage(ctx, "x", "dirty")
	if !errors.Is(err, api.ErrConflict) || !errors.Is(err, image.ErrUnclean) {
		t.Errorf("capture of an unclean filesystem: %v, want ErrConflict and ErrUnclean", err)
	}
	nfs := wire.RootPlan{Kind: wire.RootNFS, Params: map[string]string{wire.ImageParam: "debian"}}
	c.st.CreateMachine(ctx, &store.Machine{ID: idB, Name: "nfs", State: store.StateApproved, Root: nfs})
	if _, err := c.mgr.CaptureImage(ctx, "x", "nfs"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("capture of an NFS machine with no root on the server: %v, want ErrNotFound", err)
	}
	iscsiRoot := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}}
	c.st.CreateMachine(ctx, &store.Machine{ID: idC, Name: "new", State: store.StateApproved, Root: iscsiRoot})
	if _, err := c.mgr.CaptureImage(ctx, "x", "new"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("capture of a machine without volume: %v, want ErrNotFound", err)
	}
	if _, err := c.mgr.CaptureImage(ctx, "../x", "dirty"); err == nil {
		t.Error("capture under a bad name accepted")
	}
	if _, err := c.images.Get("x"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("refused captures named an image: %v", err)
	}
	// An attestation in progress refuses the capture before anything changes.
	c.mgr.SetAttestations(attestingAll{&attestations{}})
	if _, err := c.mgr.CaptureImage(ctx, "x", "dirty"); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "attesting") {
		t.Errorf("capture while attesting: %v", err)
	}
	// Without an audit record, nothing is captured.
	c.mgr.SetAttestations(nil)
	c.edit(t, idA, "feature -needs_recovery\n")
	c.log.Close()
	if _, err := c.mgr.CaptureImage(ctx, "x", "dirty"); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("capture without audit: %v, want ErrUnavailable", err)
	}
	if _, err := c.images.Get("x"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("unaudited capture named an image: %v", err)
	}
}

type attestingAll struct{ *attestations }

func (attestingAll) Attesting(string) bool { return true }
