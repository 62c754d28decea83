package vmtest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
)

// TestClusterVolatileNFSFetchedBase boots a machine whose volatile NFS
// root names an image imported only on server A, attested only at server
// B (the agent's one attestation server): B fetches the base from A
// (images.peer_listen, mutual TLS with `pki issue` certificates), rebuilds
// its tree, exports it through its nfs-ganesha inside its WireGuard tunnel,
// and the machine's kernel mounts it over NFSv4 and switch_roots into it.
func TestClusterVolatileNFSFetchedBase(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", "ip", Busybox, "mkfs.ext4", "debugfs", "ganesha.nfsd")
	begin := time.Now()
	defer func() { t.Logf("TestClusterVolatileNFSFetchedBase took %s", time.Since(begin).Round(time.Second)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "sealroot-bases"})
	storeOf := clusterEtcd(t, lab, "a", "b")
	for _, ip := range []string{clusterAttestA, clusterAttestB} {
		labIP(ctx, t, lab, "add", ip)
	}
	attestA, attestB := clusterAttestA+":"+SealrootAttestPort, clusterAttestB+":"+SealrootAttestPort
	// A boots the machine (PXE) and serves its bases; B alone attests it.
	a := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, AttestServers: []string{attestB},
		Extra: map[string]any{"attest_addr": attestA, "store": storeOf("a"),
			"images": map[string]any{"peer_listen": "127.0.0.1:9478"}}})
	b := newClusterMember(ctx, t, lab, a, clusterAttestB, tp, map[string]any{
		"boot": nil, "attest_addr": attestB, "store": storeOf("b"),
		"tunnel": map[string]any{"prefix": "10.201.0.0/24", "listen_port": 51821,
			"endpoint": clusterAttestB + ":51821", "interface": "sealroot1"},
		"nfs": tunnelNFSConfig["nfs"]})
	t.Cleanup(func() { clearImmutable(filepath.Join(b.StateDir, "images", "bases")) })
	if err := b.Start(ctx, t, lab); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAndUnmount(t, b) })
	if _, err := a.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, counterInit)); err != nil {
		t.Fatal(err)
	}
	if out, err := b.CLI(ctx, "image", "list"); err != nil || strings.Contains(out, "testroot") {
		t.Fatalf("B's images before the boot: %q, %v; want no testroot", out, err)
	}

	// Root set and approval on A; the boot is released by B.
	id, vm := approveWithRoot(ctx, t, lab, a, "vm-fetched", "volatile", "testroot", BIOS, tp)
	expectRoot(ctx, t, vm, `root: marker=none$`)
	out, err := b.CLI(ctx, "--json", "image", "list")
	if err != nil {
		t.Fatal(err)
	}
	var onB []api.Image
	if err := json.Unmarshal([]byte(out), &onB); err != nil || len(onB) != 1 || onB[0].Name != "testroot" {
		t.Fatalf("B's images after the boot: %s (%v); want testroot, fetched from A", out, err)
	}
	out, err = a.CLI(ctx, "--json", "machine", "show", id)
	if err != nil {
		t.Fatal(err)
	}
	var m api.Machine
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("machine show --json: %v", err)
	}
	for i := len(m.History) - 1; i >= 0; i-- {
		if h := m.History[i]; h.Outcome == "allowed" {
			if h.Server != "b" {
				t.Errorf("machine show: the boot was released by %q, want b", h.Server)
			}
			return
		}
	}
	t.Errorf("machine show: no allowed boot in the history")
}
