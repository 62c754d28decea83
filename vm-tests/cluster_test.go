package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// Addresses of the cluster test: server A attests on an address of its
// own (taken away to make the agent attest on B), B on another.
const (
	clusterAttestA = "10.77.0.3"
	clusterAttestB = "10.77.0.2"
)

// TestClusterHomeRoot runs issue 19's VM test: two `sealroot serve`
// processes share one etcd (embedded in the test, in the lab namespace),
// locked down as a site runs it: client TLS with client certificates
// required, authentication on, each server its own etcd user (named by
// its client certificate) with a role limited to the key prefix.
// A machine boots its persistent iSCSI root over the tunnel from its home
// server A while B answers its attestation; B is then stopped and the
// machine boots through A. The agent lists both servers
// (sealroot.server=); which one answers is made certain by what is
// reachable: B is not running at the first boot (A releases it and
// claims the home), A's attestation address is down at the second.
func TestClusterHomeRoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", "ip", Busybox, "mkfs.ext4")
	begin := time.Now()
	defer func() { t.Logf("TestClusterHomeRoot took %s", time.Since(begin).Round(time.Second)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "sealroot-cluster"})
	storeOf := clusterEtcd(t, lab, "a", "b")
	for _, ip := range []string{clusterAttestA, clusterAttestB} {
		labIP(ctx, t, lab, "add", ip)
	}
	attestA, attestB := clusterAttestA+":"+SealrootAttestPort, clusterAttestB+":"+SealrootAttestPort
	a := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, AttestServers: []string{attestA, attestB},
		Extra: map[string]any{"attest_addr": attestA, "store": storeOf("a"),
			"tunnel": tunnelISCSIConfig["tunnel"], "iscsi": tunnelISCSIConfig["iscsi"]}})
	b := newClusterMember(ctx, t, lab, a, clusterAttestB, tp, map[string]any{
		"boot": nil, "attest_addr": attestB, "store": storeOf("b"),
		"tunnel": map[string]any{"prefix": "10.201.0.0/24", "listen_port": 51821,
			"endpoint": clusterAttestB + ":51821", "interface": "sealroot1"},
		"iscsi": tunnelISCSIConfig["iscsi"]})
	if _, err := a.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, counterInit)); err != nil {
		t.Fatal(err)
	}

	// B is not running: A releases the first root boot and claims its home.
	id := newISCSIMachine(ctx, t, lab, a, "vm-home", BIOS, tp)
	if err := b.Start(ctx, t, lab); err != nil {
		t.Fatal(err)
	}
	t.Run("attested_on_b_root_from_a", func(t *testing.T) {
		labIP(ctx, t, lab, "del", clusterAttestA)
		defer labIP(ctx, t, lab, "add", clusterAttestA)
		vm := startPXE(ctx, t, lab, "vm-home-2", BIOS, tp)
		expectRoot(ctx, t, vm, `root: marker=1$`)
		checkHome(ctx, t, b, id, "b")
		st := clusterStatus(ctx, t, b)
		if !strings.Contains(st, "a up homed=1") || !strings.Contains(st, "b up homed=0") {
			t.Errorf("status on B: cluster %s; want a up with 1 root homed, b up with none", st)
		}
	})
	t.Run("b_stopped_boots_through_a", func(t *testing.T) {
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		vm := startPXE(ctx, t, lab, "vm-home-3", BIOS, tp)
		expectRoot(ctx, t, vm, `root: marker=2$`)
		checkHome(ctx, t, a, id, "a")
	})
}

// clusterEtcd starts a one-member etcd in lab's namespace for the servers
// named, locked down as a site runs it (docs/architecture.md, "Trust in
// etcd"): clients over TLS with certificates from the etcd CA required,
// authentication on, each server an etcd user (boot-<name>, its client
// certificate's CN) whose one role is readwrite on the test's prefix. It
// returns the `store` configuration section of each server: its own
// client certificate and key, the CA, the prefix.
func clusterEtcd(t *testing.T, lab *Lab, names ...string) (storeOf func(name string) map[string]any) {
	t.Helper()
	ca := etcdtest.NewCA(t, "etcd-ca")
	etcd := etcdtest.StartInTLS(t, 1, lab.Do, ca)
	prefix := etcdtest.Prefix(t)
	users := make([]string, len(names))
	certs := make(map[string][2]string)
	for i, name := range names {
		users[i] = "boot-" + name
		cert, key := ca.Issue(t, users[i], false)
		certs[name] = [2]string{cert, key}
	}
	etcd.EnableAuth(prefix, users...)
	return func(name string) map[string]any {
		c, ok := certs[name]
		if !ok {
			t.Fatalf("clusterEtcd: no etcd user for server %q", name)
		}
		return map[string]any{"backend": "etcd", "endpoints": etcd.Endpoints, "prefix": prefix, "server_name": name,
			"cert_file": c[0], "key_file": c[1], "ca_file": ca.File}
	}
}

// newClusterMember prepares, but does not start, a second server of a's
// cluster, attesting on ip: its own state directory, a server
// certificate from a's CA (`sealroot pki issue`), its age recipient
// joined to the secrets keyring on a (`sealroot cluster join`), and the
// configuration sections extra.
func newClusterMember(ctx context.Context, t *testing.T, lab *Lab, a *Sealroot, ip string, tp *TPM, extra map[string]any) *Sealroot {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "sealroot-b") // names its log lines
	if err := os.Symlink(a.Bin, bin); err != nil {
		t.Fatal(err)
	}
	s := &Sealroot{Bin: bin, StateDir: dir, Socket: filepath.Join(dir, "admin.sock"), Logf: t.Logf}
	if err := s.writeEKBundle([]*TPM{tp}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CLI(ctx, "pki", "issue", "--state-dir", a.StateDir, "--out", filepath.Join(dir, "pki"),
		"--dns", SealrootName, "--ip", ip); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.writeConfig(lab, "", extra)
	if err != nil {
		t.Fatal(err)
	}
	recipient, err := s.CLI(ctx, "cluster", "recipient", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The store is in the lab namespace: join from there.
	join := lab.Exec(ctx, a.Bin, "cluster", "join", strings.TrimSpace(recipient), "--config", a.configPath())
	if out, err := join.CombinedOutput(); err != nil {
		t.Fatalf("sealroot cluster join: %v: %s", err, out)
	}
	return s
}

// labIP adds or deletes (op) the address ip/24 on the lab bridge.
func labIP(ctx context.Context, t *testing.T, lab *Lab, op, ip string) {
	t.Helper()
	if out, err := lab.Exec(ctx, "ip", "addr", op, ip+"/24", "dev", lab.Bridge).CombinedOutput(); err != nil {
		t.Fatalf("ip addr %s %s: %v: %s", op, ip, err, out)
	}
}

// checkHome checks, with `machine show` on s, that machine id's home is
// server a and that its newest allowed boot was released by server by.
func checkHome(ctx context.Context, t *testing.T, s *Sealroot, id, by string) {
	t.Helper()
	out, err := s.CLI(ctx, "--json", "machine", "show", id)
	if err != nil {
		t.Fatal(err)
	}
	var m api.Machine
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("machine show --json: %v", err)
	}
	if m.Home != "a" {
		t.Errorf("machine show: home server %q, want a", m.Home)
	}
	for i := len(m.History) - 1; i >= 0; i-- {
		if h := m.History[i]; h.Outcome == "allowed" {
			if h.Server != by {
				t.Errorf("machine show: newest boot released by %q, want %s", h.Server, by)
			}
			return
		}
	}
	t.Errorf("machine show: no allowed boot in the history")
}

// clusterStatus returns the Cluster section of `sealroot status` on s as
// "name up|down homed=N" lines.
func clusterStatus(ctx context.Context, t *testing.T, s *Sealroot) string {
	t.Helper()
	out, err := s.CLI(ctx, "--json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if st.Cluster == nil {
		t.Fatal("status has no cluster section")
	}
	var b strings.Builder
	for _, srv := range st.Cluster.Servers {
		state := "up"
		if !srv.Up {
			state = "down"
		}
		fmt.Fprintf(&b, "%s %s homed=%d\n", srv.Name, state, srv.Homed)
	}
	return b.String()
}
