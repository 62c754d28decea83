package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit/audittest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/wire"
)

// TestServeProcessesShareEtcd runs two `sealroot serve` processes, A and
// B, in their own network namespaces on one three-member etcd cluster,
// and machines (software TPMs) in a third namespace that reach both:
//
//   - approved on A with `sealroot machine approve`, a machine attests on
//     B at once;
//   - images imported on A (`sealroot image import`) move to B: one
//     pulled with `sealroot image pull NAME` (the base hashes to its
//     digest, its tree has A's files), one fetched by B for a machine
//     whose volatile root names it, attesting on B;
//   - revoked on A with `sealroot machine revoke` while B holds its
//     exchange between challenge and evidence, it is refused on B;
//   - A and B each hold an exchange of the same boot past its challenge,
//     then both go on: one releases, the other is refused boot-released;
//   - with one etcd member of three stopped B releases; with two (no
//     quorum) it refuses cleanly (store-unavailable, the machine's record
//     unchanged) and releases again once a member is back;
//   - the server a machine is attesting at is killed (SIGKILL) after its
//     challenge: the agent fails over to the other and gets its credential,
//     and the killed server's registration lapses (B's status drops it);
//   - with A down, a pull on B of an image only A had is refused naming
//     it.
func TestServeProcessesShareEtcd(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	tp := newTopo(t)
	etcdCA := etcdtest.NewCA(t, "etcd-ca")
	etcd := etcdtest.StartOnTLS(t, 3, tp.etcdIP.String(), etcdCA)
	prefix := etcdtest.Prefix(t)
	// A loaded host can take a while to elect a leader; the servers'
	// first read must not race that.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := etcd.Ready(rctx, etcd.Client())
	cancel()
	if err != nil {
		t.Fatalf("etcd cluster not answering a read after a minute: %v", err)
	}

	work := t.TempDir()
	bin := buildSealroot(t, work)
	dirA, dirB := filepath.Join(work, "a"), filepath.Join(work, "b")
	etcdClientCert(t, etcdCA, "boot-a", dirA)
	etcdClientCert(t, etcdCA, "boot-b", dirB)
	etcd.EnableAuth(prefix, "boot-a", "boot-b")
	sealroot(t, bin, "pki", "init", "--state-dir", dirA, "--dns", serverName)
	// B gets its own certificate from A's CA, as a new server does.
	sealroot(t, bin, "pki", "issue", "--state-dir", dirA, "--dns", serverName, "--out", filepath.Join(dirB, "pki"))
	a := startServe(t, tp.a, bin, "boot-a", dirA, attestA.String(), etcd.Endpoints, prefix,
		map[string]any{"images": map[string]any{"peer_listen": basesA.String()}})
	b := startServe(t, tp.b, bin, "boot-b", dirB, attestB.String(), etcd.Endpoints, prefix,
		map[string]any{"images": map[string]any{"peer_listen": basesB.String()}, "iscsi": map[string]any{"listen": iscsiB.String()}})

	caPEM, err := os.ReadFile(filepath.Join(dirA, "pki", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.CAPool(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	agents, err := loadgen.NewAgents(ctx, rand.Reader, 3, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, tp, roots)
	node, stolen, diskless := agents[0], agents[1], agents[2]

	t.Run("approve on A, attest on B", func(t *testing.T) {
		for _, ag := range agents {
			id := m.enroll(t, ag, attestB.String())
			sealroot(t, bin, "--socket", a.socket, "machine", "approve", id)
		}
		if _, err := m.attestOnce(t, node, nil, attestB.String()); err != nil {
			t.Fatalf("attest on B of a machine approved on A = %v, want a credential", err)
		}
	})

	// Images imported on A: os is pulled on B by name, desk is fetched by
	// B for a root that names it, onlyA stays on A.
	var osImage, desk, onlyA api.Image
	t.Run("bases move from A to B", func(t *testing.T) {
		sealrootJSON(t, &osImage, bin, "--socket", a.socket, "image", "import", "os", sourceTree(t, "os"))
		sealrootJSON(t, &desk, bin, "--socket", a.socket, "image", "import", "desk", sourceTree(t, "desk"))
		sealrootJSON(t, &onlyA, bin, "--socket", a.socket, "image", "import", "only-a", sourceTree(t, "only-a"))
		var onB []api.Image
		if sealrootJSON(t, &onB, bin, "--socket", b.socket, "image", "list"); len(onB) != 0 {
			t.Fatalf("B lists %+v before any pull; want none (each server keeps its own)", onB)
		}
		out := sealroot(t, bin, "--socket", b.socket, "image", "list", "--peers")
		t.Logf("image list --peers on B:\n%s", out)
		if !strings.Contains(out, "boot-a") || !strings.Contains(out, "desk") {
			t.Fatalf("image list --peers on B does not show A's images:\n%s", out)
		}

		var pulled api.PullResult
		sealrootJSON(t, &pulled, bin, "--socket", b.socket, "image", "pull", "os")
		if pulled.Digest != osImage.Digest || pulled.From != "boot-a" || len(pulled.Versions) != 1 || pulled.Versions[0].Version != 1 {
			t.Fatalf("image pull os on B = %+v, want os@v1 sha256:%s from boot-a", pulled, osImage.Digest)
		}
		sameBase(t, a, b, osImage.Digest)
		out = sealroot(t, bin, "--socket", b.socket, "image", "pull", "sha256:"+osImage.Digest)
		if !strings.Contains(out, "already here") {
			t.Fatalf("pull by digest of a base B holds:\n%s\nwant already here", out)
		}

		// A volatile root on B of an image only A holds: B fetches it
		// before it readies the root.
		id := wire.MachineID(diskless.TPM.EKPublic())
		sealroot(t, bin, "--socket", a.socket, "machine", "set-root", id, "--kind", "volatile", "--image", "desk", "--via", "iscsi")
		if _, err := os.Stat(basePath(b, desk.Digest)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("B holds desk's base before the machine attests there: %v", err)
		}
		start := time.Now()
		if _, err := m.attestOnce(t, diskless, nil, attestB.String()); err != nil {
			t.Fatalf("attest on B with a volatile root of an image only A holds = %v, want a credential", err)
		}
		t.Logf("attest on B, desk fetched from A on the way: %v", time.Since(start).Round(time.Millisecond))
		sameBase(t, a, b, desk.Digest)
		sealrootJSON(t, &onB, bin, "--socket", b.socket, "image", "list")
		var names []string
		for _, im := range onB {
			names = append(names, fmt.Sprintf("%s@v%d", im.Name, im.Version))
		}
		if strings.Join(names, " ") != "desk@v1 os@v1" {
			t.Fatalf("B's images after the pull and the boot: %v; want desk@v1 os@v1, not only-a", names)
		}
	})

	t.Run("revoke on A while B holds the exchange", func(t *testing.T) {
		id := wire.MachineID(stolen.TPM.EKPublic())
		held := loadgen.NewHeldAgent(stolen)
		done := make(chan error, 1)
		go func() {
			_, err := m.attestOnce(t, stolen, held, attestB.String())
			done <- err
		}()
		defer held.Proceed()
		select {
		case <-held.Reached():
		case err := <-done:
			t.Fatalf("attestation on B ended before its evidence: %v", err)
		}
		sealroot(t, bin, "--socket", a.socket, "machine", "revoke", id, "--reason", "stolen")
		audittest.WaitRefused(t, filepath.Join(b.dir, "audit.log"), id, "revoked")
		held.Proceed()
		err := <-done
		var r *agentattest.RefusedError
		if !errors.As(err, &r) || r.Check != "revoked" {
			t.Fatalf("attest on B = %v, want refused by check revoked", err)
		}
	})

	t.Run("two servers race to release one boot", func(t *testing.T) {
		// One credential per boot: the release that commits second finds
		// the boot released since it read the record and is refused.
		if err := node.Reboot(); err != nil {
			t.Fatal(err)
		}
		var held []*loadgen.HeldAgent
		done := make(chan error, 2)
		for _, srv := range []string{attestA.String(), attestB.String()} {
			h := loadgen.NewHeldAgent(node)
			defer h.Proceed()
			held = append(held, h)
			c, err := agentattest.New(agentattest.Config{Servers: []string{srv}, ServerName: serverName, Roots: roots,
				Device: h, NoUnseal: true, Transport: m.tr})
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				actx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				_, err := c.AttestOnce(actx)
				done <- err
			}()
		}
		for _, h := range held {
			<-h.Reached()
		}
		for _, h := range held {
			h.Proceed()
		}
		var released, refused int
		for range held {
			err := <-done
			t.Logf("racing attestation: %v", err)
			var r *agentattest.RefusedError
			switch {
			case err == nil:
				released++
			case errors.As(err, &r) && r.Check == "boot-released":
				refused++
			}
		}
		if released != 1 || refused != 1 {
			t.Errorf("A and B, each holding an exchange of the same boot past its challenge: %d released, %d refused boot-released; want one each", released, refused)
		}
	})

	t.Run("etcd quorum lost", func(t *testing.T) {
		etcd.Stop(2)
		if _, err := m.attestOnce(t, node, nil, attestB.String()); err != nil {
			t.Fatalf("attest on B with one etcd member of three down: %v", err)
		}
		st, err := store.NewEtcd(ctx, etcd.Client(), prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		id := wire.MachineID(node.TPM.EKPublic())
		before, err := st.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		etcd.Stop(1)
		start := time.Now()
		_, err = m.attestOnce(t, node, nil, attestB.String())
		t.Logf("attest on B without quorum: %v after %v", err, time.Since(start))
		var r *agentattest.RefusedError
		if !errors.As(err, &r) || r.Check != "store-unavailable" {
			t.Fatalf("attest on B without quorum = %v, want refused by check store-unavailable", err)
		}
		etcd.Restart(1)
		after, err := st.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if after.BootCount != before.BootCount || after.ResetCount != before.ResetCount || after.Version != before.Version {
			t.Fatalf("a refused attestation changed the record: boots %d -> %d, reset count %d -> %d, version %d -> %d",
				before.BootCount, after.BootCount, before.ResetCount, after.ResetCount, before.Version, after.Version)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := m.attestOnce(t, node, nil, attestB.String())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("attest on B 30s after the quorum returned: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("server killed mid-boot", func(t *testing.T) {
		// The machine's root lives on B (B readied its first boot), so
		// the server that dies is A, the one its agent tries first
		// (a seed whose shuffle puts A first); B has what it needs.
		id := wire.MachineID(node.TPM.EKPublic())
		if got, err := a.admin().Machine(ctx, id); err != nil || got.Home != "boot-b" {
			t.Fatalf("machine on A = %+v, %v; want home boot-b", got, err)
		}
		servers := []string{attestB.String(), attestA.String()}
		seed := uint64(1)
		for agentattest.ShuffleServers(servers, mrand.New(mrand.NewPCG(seed, seed)))[0] != attestA.String() {
			seed++
		}
		victim := a
		held := loadgen.NewHeldAgent(node)
		if err := node.Reboot(); err != nil {
			t.Fatal(err)
		}
		c, err := agentattest.New(agentattest.Config{Servers: servers, ServerName: serverName, Roots: roots,
			Device: held, NoUnseal: true, Transport: m.tr, Rand: mrand.New(mrand.NewPCG(seed, seed)),
			AttemptTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var console strings.Builder
		done := make(chan error, 1)
		go func() {
			actx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			_, err := c.Attest(actx, &console)
			done <- err
		}()
		defer held.Proceed()
		select {
		case <-held.Reached():
		case err := <-done:
			t.Fatalf("attestation ended before its evidence: %v", err)
		}
		victim.kill(t)
		held.Proceed()
		start := time.Now()
		if err := <-done; err != nil {
			t.Fatalf("attest after %s was killed mid-boot = %v, want a credential from the other server\n%s", victim.name, err, console.String())
		}
		t.Logf("%s killed after its challenge; credential from the other server %v later; the agent's console:\n%s",
			victim.name, time.Since(start).Round(time.Millisecond), console.String())
		// Killed, A never revoked its registration: it lapses (etcd lease,
		// store.RegistrationTTL), and B's status no longer lists it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := b.admin().Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cs := st.Cluster; cs != nil && len(cs.Servers) == 1 && cs.Servers[0].Name == "boot-b" && cs.Servers[0].Up {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B's cluster status 20s after A was killed = %+v, want boot-b alone", st.Cluster)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("A down: a pull of an image only A had is refused", func(t *testing.T) {
		if onlyA.Digest == "" {
			t.Skip("no image imported on A")
		}
		if a.cmd.ProcessState == nil { // the subtest killing A ended early
			a.kill(t)
		}
		for _, ref := range []string{"only-a", "sha256:" + onlyA.Digest} {
			out := sealrootFails(t, bin, "--socket", b.socket, "image", "pull", ref)
			t.Logf("image pull %s on B with A down: %s", ref, out)
			if !strings.Contains(out, ref) || !strings.Contains(out, "no running peer holds it") {
				t.Errorf("image pull %s on B with A down:\n%s\nwant an error naming it: no running peer holds it", ref, out)
			}
		}
		if _, err := os.Stat(basePath(b, onlyA.Digest)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("B holds only-a's base after refused pulls: %v", err)
		}
	})
}

// sourceTree is a small directory tree to import, its content unique to
// release.
func sourceTree(t *testing.T, release string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("ID="+release+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "payload"), bytes.Repeat([]byte(release), 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// basePath is where s keeps the base of digest.
func basePath(s *serve, digest string) string {
	return filepath.Join(s.dir, "images", "bases", "sha256-"+digest+".img")
}

// sameBase checks that a and b hold the base of digest with the same
// bytes, hashing to digest, and its tree (for NFS roots) with the same
// files.
func sameBase(t *testing.T, a, b *serve, digest string) {
	t.Helper()
	for _, s := range []*serve{a, b} {
		if got := fileSum(t, basePath(s, digest)); got != digest {
			t.Fatalf("%s's base sha256:%.12s hashes to sha256:%.12s", s.name, digest, got)
		}
	}
	for _, f := range []string{"etc/os-release", "payload"} {
		tree := func(s *serve) string { return filepath.Join(s.dir, "images", "trees", "sha256-"+digest, f) }
		if ha, hb := fileSum(t, tree(a)), fileSum(t, tree(b)); ha != hb {
			t.Fatalf("%s in the tree of sha256:%.12s differs between A and B", f, digest)
		}
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// machine is the simulated machines' side: a socket in the machine
// namespace that every attestation goes through.
type machine struct {
	tr    *quic.Transport
	roots *x509.CertPool
}

func newMachine(t *testing.T, tp *topo, roots *x509.CertPool) *machine {
	t.Helper()
	var pc net.PacketConn
	err := tp.machine.Do(func() (err error) {
		pc, err = net.ListenUDP("udp", &net.UDPAddr{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{tr: &quic.Transport{Conn: pc}, roots: roots}
	t.Cleanup(func() {
		m.tr.Close()
		pc.Close()
	})
	return m
}

// attestOnce boots ag again (a TPM reset, the same measured boot) and
// attests it once at servers, in order, through dev (nil: ag itself).
func (m *machine) attestOnce(t *testing.T, ag *loadgen.Agent, dev agentattest.Device, servers ...string) (*agentattest.Result, error) {
	if err := ag.Reboot(); err != nil {
		return nil, err
	}
	if dev == nil {
		dev = ag
	}
	c, err := agentattest.New(agentattest.Config{Servers: servers, ServerName: serverName, Roots: m.roots,
		Device: dev, NoUnseal: true, Transport: m.tr})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.AttestOnce(ctx)
}

// enroll makes ag known at server (its first attestation leaves it
// pending) and returns its machine ID.
func (m *machine) enroll(t *testing.T, ag *loadgen.Agent, server string) string {
	t.Helper()
	_, err := m.attestOnce(t, ag, nil, server)
	var pending *agentattest.PendingError
	if !errors.As(err, &pending) {
		t.Fatalf("first attestation at %s = %v, want pending", server, err)
	}
	return pending.MachineID
}
