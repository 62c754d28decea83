package vmtest

import (
	"context"
	"testing"
	"time"
)

// TestDistroNFSRoot boots the Debian 12 of TestDistroRoot over sealroot's
// NFSv4 root (the machine's own overlay export from the nfs-ganesha that
// `sealroot serve` runs on its tunnel address) until systemd has
// finished booting, and measures what the boot read from its root, for
// an NFS storm: the kernel NFS client's counts of the root mount
// (/proc/self/mountstats: READ payload bytes and RPCs, every RPC and the
// bytes of the server's replies), logged as a "distro nfs root read:"
// line, and the bytes the server sent through the machine's tunnel peer.
// nfs-ganesha has no counter sealroot reads (its statistics are on
// D-Bus), so the count is the client's.
//
// Slow: runs only with -vm and SEALROOT_DISTRO=1.
func TestDistroNFSRoot(t *testing.T) {
	ctx, tree := startDistroTest(t, "ganesha.nfsd")
	tp := NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "sealroot-distro-nfs"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Extra: tunnelNFSConfig})
	t.Cleanup(func() { stopAndUnmount(t, sr) })
	if _, err := sr.CLI(ctx, "image", "import", "debian", tree); err != nil {
		t.Fatal(err)
	}
	id, vm := approveWithRoot(ctx, t, lab, sr, "vm-distro-nfs", "nfs", "debian", BIOS, tp)
	r := expectDistroReady(ctx, t, vm)
	t.Logf("distro nfs root read: %s until=systemd-%s boot=first-boot", r.NFS, orNone(r.State))
	logTunnelBytes(ctx, t, sr, id, "first boot, nfs")
	if r.NFS.Reads == 0 || r.NFS.ReadBytes == 0 {
		t.Errorf("the root mount's statistics show no reads (%s)", r.NFS)
	}
	if m := expectBoot(ctx, t, vm, `distro: marker=(\S+)`)[1]; m != "none" {
		t.Errorf("distro root found marker %s on its first boot", m)
	}
	expectBoot(ctx, t, vm, `distro: wrote marker`)
	expectBoot(ctx, t, vm, `reboot: Power down`)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("VM did not power off: %v", err)
	}
	vm.LogTimings()
}
