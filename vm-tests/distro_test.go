package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
)

// TestDistroRoot boots a real distribution, a debootstrap'd Debian 12
// with systemd, over sealroot's iSCSI root (production chain: PXE,
// attestation, WireGuard, mutual CHAP, switch_root). The @sealroot-iscsi
// keeper must survive switch_root into systemd, and systemd must spare
// it at shutdown (its argv[0] starts with '@') so that the root stays
// reachable until the kernel powers off: the marker the first boot wrote
// is there in the second boot.
//
// It also measures what each boot reads from its root, for the storm
// simulator (test/storm rootReadSize): the server's iSCSI counters
// (metrics endpoint: bytes, READ commands and their sizes, bytes
// written) from before the machine powers on until systemd has finished
// booting (multi-user.target reached), logged as "distro root read:"
// lines, with the guest's own count of its root disk's requests beside
// them.
//
// Slow (the first run downloads about 100 MB into the build cache):
// runs only with -vm and SEALROOT_DISTRO=1.
func TestDistroRoot(t *testing.T) {
	ctx, tree := startDistroTest(t, "debugfs")
	tp := NewTPM(t)
	// Its own namespace name: other VM tests may run at the same time.
	lab := NewLab(t, LabOptions{Name: "sealroot-distro"})
	extra := maps.Clone(tunnelISCSIConfig)
	extra["metrics_addr"] = distroMetricsAddr
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Extra: extra})
	if _, err := sr.CLI(ctx, "image", "import", "debian", tree); err != nil {
		t.Fatal(err)
	}
	counts := func() iscsiCounts {
		c, err := scrapeISCSI(ctx, lab, distroMetricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before := counts()
	vm := startPXE(ctx, t, lab, "vm-distro", BIOS, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	// The default init, /sbin/init, is Debian's absolute symlink to
	// /lib/systemd/systemd: SwitchRoot must resolve it inside the new root.
	if _, err := sr.CLI(ctx, "machine", "set-root", id, "--image", "debian", "--kind", "iscsi"); err != nil {
		t.Fatal(err)
	}
	// A unit in the image reads this secret with LoadCredential=.
	secret := []byte("distro-secret-VALUE")
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, "secret", "set", id, "api-token", secretFile); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, approveArgs(id, "vm-distro", BIOS)...); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(secret)
	credential := hex.EncodeToString(sum[:])
	expectDistro(ctx, t, vm, "none", credential, func(r distroReady) {
		logRootReads(t, "first boot", r, counts().sub(before))
		logTunnelBytes(ctx, t, sr, id, "first boot")
	})
	logShutdownLines(t, vm)

	first := vm
	before = counts()
	vm = startPXE(ctx, t, lab, "vm-distro-2", BIOS, tp)
	expectDistro(ctx, t, vm, "1", credential, func(r distroReady) {
		logRootReads(t, "second boot", r, counts().sub(before))
		logTunnelBytes(ctx, t, sr, id, "second boot")
	})
	logShutdownLines(t, vm)
	// The unit read the value, but nothing kept it: not the machine's
	// persistent volume after two shutdowns, the server's state, nor
	// either console.
	noTrace(t, sr.StateDir, secret, first.ConsoleLog(), vm.ConsoleLog())
}

// startDistroTest skips t unless distribution tests are enabled (-vm and
// SEALROOT_DISTRO=1) and the tools (with QEMU, swtpm, nsenter and
// mkfs.ext4) are here, runs it in parallel, logs how long it took, and
// returns its context (40 minutes) and the Debian tree.
func startDistroTest(t *testing.T, tools ...string) (ctx context.Context, tree string) {
	t.Helper()
	SkipUnlessEnabled(t)
	t.Parallel()
	if os.Getenv("SEALROOT_DISTRO") != "1" {
		t.Skip("distribution root test: set SEALROOT_DISTRO=1 (debootstraps Debian once, ~100 MB)")
	}
	RequireTools(t, append([]string{QEMU, "swtpm", "nsenter", "mkfs.ext4"}, tools...)...)
	begin := time.Now()
	t.Cleanup(func() { t.Logf("%s took %s", t.Name(), time.Since(begin).Round(time.Second)) })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	t.Cleanup(cancel)
	return ctx, DistroRoot(ctx, t)
}

// noTrace fails t if value is in any regular file under dir or in one of
// files.
func noTrace(t *testing.T, dir string, value []byte, files ...string) {
	t.Helper()
	scanned := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("scan %s: %v", path, err)
			continue
		}
		scanned++
		if bytes.Contains(b, value) {
			t.Errorf("the secret's value is in %s", path)
		}
	}
	t.Logf("secret value absent from %d files (server state, volumes, consoles)", scanned)
}

// expectDistro waits for the agent's tunnel and root stages, systemd's
// check service (one surviving keeper, the image's own host name kept,
// the digest of the secret a LoadCredential= unit read, the marker of the
// previous boot) and the kernel's power-off after systemd's shutdown.
// When systemd has finished booting it calls ready, while the check
// service pauses.
func expectDistro(ctx context.Context, t *testing.T, vm *VM, marker, credential string, ready func(distroReady)) {
	t.Helper()
	ready(expectDistroReady(ctx, t, vm))
	if k := expectBoot(ctx, t, vm, `distro: keeper=(\d*)`)[1]; k != "1" {
		t.Errorf("%q @sealroot-iscsi keepers alive under systemd, want 1", k)
	}
	if m := expectBoot(ctx, t, vm, `distro: hostname=(\S+) credential=(\S+)`); m[1] != "sealroot-distro" || m[2] != credential {
		t.Errorf("distro root: hostname %s, credential sha256 %s; want sealroot-distro (the image's) and %s", m[1], m[2], credential)
	}
	if m := expectBoot(ctx, t, vm, `distro: marker=(\S+)`)[1]; m != marker {
		t.Errorf("distro root found marker %s, want %s", m, marker)
	}
	expectBoot(ctx, t, vm, `distro: wrote marker`)
	// systemd-shutdown must spare the keeper (argv[0] "@sealroot-iscsi")
	// until the kernel powers off, or a connection drop during the final
	// sync and remount would fail the root's last writes.
	if m := expectBoot(ctx, t, vm, `(sealroot-iscsi: keeper stopped.*|reboot: Power down)`); m[1] != "reboot: Power down" {
		t.Errorf("the @sealroot-iscsi keeper died during systemd's shutdown: %s", m[1])
		expectBoot(ctx, t, vm, `reboot: Power down`)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("VM did not power off: %v", err)
	}
	vm.LogTimings()
}

// reShutdown matches console lines of systemd's shutdown that concern
// processes, file systems, the keeper or iSCSI.
var reShutdown = regexp.MustCompile(`(?i)sealroot-iscsi|@sealroot|keeper|iscsi|connection|session|remount|unmount|sending sig|process|systemd-shutdown|i/o error|ext4|journal|reboot:`)

// logShutdownLines logs the console lines from systemd's shutdown on.
func logShutdownLines(t *testing.T, vm *VM) {
	t.Helper()
	b, err := os.ReadFile(vm.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.Index(s, "distro: wrote marker"); i >= 0 {
		s = s[i:]
	}
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if reShutdown.MatchString(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	t.Logf("%s shutdown console lines:\n%s", vm.opts.Name, strings.Join(lines, "\n"))
}

// distroReady is what the check service printed once systemd had
// finished booting.
type distroReady struct {
	State string                   // systemctl is-system-running
	Disks map[string]guestDiskStat // by disk name, on a block device root
	NFS   nfsCounts                // on an NFS root
}

// expectDistroReady waits for the agent's tunnel and root stages and for
// the check service's lines at the end of systemd's boot.
func expectDistroReady(ctx context.Context, t *testing.T, vm *VM) distroReady {
	t.Helper()
	for _, re := range []string{`sealroot: \[ok\] tunnel `, `sealroot: \[ok\] root `} {
		if m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|`+re+`)`); m[1] != "" {
			t.Fatalf("agent failed: %s", m[1])
		}
	}
	r := distroReady{Disks: map[string]guestDiskStat{}}
	for {
		m := expectBoot(ctx, t, vm, `distro: (?:disk (\S+) (.*)|nfs (.*)|booted systemd ?(.*))`)
		switch {
		case m[1] != "":
			st, err := parseGuestDiskStat(m[2])
			if err != nil {
				t.Fatal(err)
			}
			r.Disks[m[1]] = st
		case m[3] != "":
			if err := r.NFS.add(m[3]); err != nil {
				t.Fatal(err)
			}
		default:
			t.Logf("systemd: %s", m[0])
			r.State = m[4]
			return r
		}
	}
}

// logRootReads logs what a boot read from its iSCSI root until systemd
// was ready: the server's count (the figure test/storm's rootReadSize
// takes), the READs by size, and the guest's own count of its disks.
func logRootReads(t *testing.T, boot string, r distroReady, c iscsiCounts) {
	t.Helper()
	t.Logf("distro root read: %s until=systemd-%s boot=%s", c, orNone(r.State), strings.ReplaceAll(boot, " ", "-"))
	t.Logf("distro root read sizes (%s): %s", boot, c.Sizes())
	for _, d := range slices.Sorted(maps.Keys(r.Disks)) {
		t.Logf("distro root read, guest's count (%s, /sys/block/%s/stat): %s", boot, d, r.Disks[d])
	}
	if c.ReadBytes <= 0 || c.Reads <= 0 {
		t.Errorf("the server counted no reads of the root (%s)", c)
	}
}

// logTunnelBytes logs the bytes through machine id's tunnel peer, which
// is this boot's (a new key each boot): what the server sent it (root
// data, protocol and WireGuard overhead) and received.
func logTunnelBytes(ctx context.Context, t *testing.T, sr *Sealroot, id, boot string) {
	t.Helper()
	out, err := sr.run(ctx, "--json", "tunnel", "list")
	if err != nil {
		t.Fatal(err)
	}
	var peers []api.TunnelPeer
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		t.Fatalf("tunnel list --json: %v", err)
	}
	for _, p := range peers {
		if p.MachineID == id {
			t.Logf("distro root tunnel (%s): server sent=%d (%.1f MiB) received=%d (%.1f MiB) since the peer was installed",
				boot, p.TxBytes, float64(p.TxBytes)/(1<<20), p.RxBytes, float64(p.RxBytes)/(1<<20))
			return
		}
	}
	t.Errorf("no tunnel peer of machine %s", id)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
