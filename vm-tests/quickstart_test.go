package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
)

// TestQuickstartAsWritten follows the README's real-network quickstart
// literally, reading its command block from README.md: it builds the
// package (`make deb`), installs it into a clean root and runs each line
// of the block in a mount namespace where that root is the server's
// /usr/bin, /etc, /var/lib, /var/cache and /run (the host lends only its
// Debian system: the package's dependencies, apt, no Go and no checkout),
// on the lab bridge next to a site DHCP server. It then powers on a UEFI
// VM with a swtpm, approves it from `machine list --pending` and sees it
// attested.
//
// Where the block says `apt-get install ./sealroot_*_amd64.deb`, the
// test unpacks the package (dpkg-deb -x) and runs its postinst steps;
// `systemctl enable --now sealroot` runs the unit's ExecStartPre and
// ExecStart; the interface and the example fingerprint are replaced by
// the lab's bridge and the VM's fingerprint. The kernel download cache
// (/var/cache/sealroot) is the harness's, so Debian's kernel is not
// fetched again.
func TestQuickstartAsWritten(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", "unshare", "mount", "make", "dpkg-deb", "apt-cache",
		"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/ipxe.efi", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	block := readmeQuickstart(t)

	deb := makeDeb(ctx, t)
	lab := NewLab(t, LabOptions{})
	lab.ServeSiteDHCP(t)
	srv := newInstalledServer(ctx, t, lab, deb)
	tp := NewTPM(t)

	var vm *VM
	var fingerprint string
	for _, line := range block {
		cmd, comment, _ := strings.Cut(line, "#")
		args := strings.Fields(cmd)
		t.Logf("README: %s", strings.TrimSpace(line))
		switch {
		case len(args) == 0 && strings.Contains(comment, "power on a machine"):
			vm = lab.NewVM(t, VMOptions{Name: "nuc", Firmware: UEFI, TPM: tp, PXE: true})
			if err := vm.Start(ctx); err != nil {
				t.Fatal(err)
			}
			id := expectBoot(ctx, t, vm, rePending.String())[1]
			t.Logf("the machine's console shows fingerprint %s", id)
		case len(args) == 0:
		case len(args) == 3 && args[0] == "apt-get" && args[1] == "install" && strings.HasPrefix(args[2], "./sealroot_"):
			// Done by newInstalledServer: the package is unpacked.
		case args[0] == "systemctl" && slices.Equal(args[1:], []string{"enable", "--now", "sealroot"}):
			srv.startUnit(ctx, t)
		case args[0] == "sealroot" && len(args) > 1 && args[1] == "setup":
			if i := slices.Index(args, "--interface"); i < 0 || i+1 == len(args) {
				t.Fatalf("README setup has no --interface IF: %q", line)
			} else {
				args[i+1] = lab.Bridge
			}
			out := srv.run(ctx, t, args...)
			if !strings.Contains(out, "interface: "+lab.Bridge+", address "+SealrootIP) || !strings.Contains(out, "initramfs: ") {
				t.Errorf("setup output does not say it found %s and built the initramfs", SealrootIP)
			}
		case args[0] == "sealroot" && slices.Equal(args[1:], []string{"machine", "list", "--pending"}):
			if vm == nil {
				t.Fatal("README lists pending machines before one is powered on")
			}
			fingerprint = pendingFingerprint(t, srv.run(ctx, t, args...))
		case args[0] == "sealroot" && len(args) == 4 && args[1] == "machine" && args[2] == "approve":
			if fingerprint == "" {
				t.Fatal("README approves before listing pending machines")
			}
			// The README's example prefix has the length an operator types.
			args[3] = fingerprint[:len(args[3])]
			srv.run(ctx, t, args...)
		default:
			t.Fatalf("README quickstart line the test does not know how to follow: %q", line)
		}
	}
	if vm == nil || fingerprint == "" {
		t.Fatal("README quickstart powers on no machine or approves none")
	}
	m := expectBoot(ctx, t, vm, reAttested.String())
	if !strings.HasPrefix(m[2], fingerprint) {
		t.Errorf("attested as %s (%s), want fingerprint %s...", m[1], m[2], fingerprint)
	}
	t.Logf("attested as %s", m[1])
	out := srv.run(ctx, t, "sealroot", "--json", "machine", "show", m[2])
	var mach store.Machine
	if err := json.Unmarshal([]byte(out), &mach); err != nil {
		t.Fatalf("machine show --json: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := vm.Wait(wctx); err != nil {
		t.Errorf("VM did not power off: %v", err)
	}
	if mach.State != store.StateApproved || mach.BootCount != 1 {
		t.Errorf("machine %s: state %s, boot_count %d; want %s, 1", mach.ID, mach.State, mach.BootCount, store.StateApproved)
	}
	vm.LogTimings()
	t.Logf("quickstart as written: package to attested machine in %s", time.Since(start).Round(time.Second))
}

// readmeQuickstart returns the lines of the README's quickstart block
// (after <!-- quickstart), comments included.
func readmeQuickstart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "<!-- quickstart")
	if !ok {
		t.Fatal("README has no <!-- quickstart --> block")
	}
	_, block, ok = strings.Cut(block, "```sh\n")
	if !ok {
		t.Fatal("README quickstart block is not a ```sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	return strings.Split(strings.TrimRight(block, "\n"), "\n")
}

// makeDeb runs `make deb` in the checkout into a temporary directory and
// returns the package.
func makeDeb(ctx context.Context, t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	started := time.Now()
	cmd := exec.CommandContext(ctx, "make", "deb", "DEB_OUT="+out)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "sealroot_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one sealroot_*_amd64.deb", debs)
	}
	t.Logf("make deb: %s in %s", filepath.Base(debs[0]), time.Since(started).Round(time.Second))
	return debs[0]
}

// installedServer is the package installed into a clean root, seen
// through a mount namespace held by a sleeping process: the root's
// /usr/bin over the host's (so /usr/bin/sealroot is the package's), its
// /etc and /var/lib as overlays whose writes land in the root, a fresh
// /run, and the harness's kernel cache as /var/cache/sealroot.
type installedServer struct {
	root  string // the unpacked package, and the upper layers' writes
	mntNS string // /proc/PID/ns/mnt of the holder
	lab   *Lab
}

func newInstalledServer(ctx context.Context, t *testing.T, lab *Lab, deb string) *installedServer {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	// postinst configure: the state directory, 0700.
	for _, d := range []string{"etc", "var/lib/sealroot", "var/cache"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "var/lib/sealroot"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/sealroot")); err != nil {
		t.Fatalf("the package has no /usr/bin/sealroot: %v", err)
	}

	holder := exec.CommandContext(context.Background(), "unshare", "--mount", "--propagation", "private", "sleep", "infinity")
	ownProcessGroup(holder)
	p, err := startProc(holder)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	s := &installedServer{root: root, mntNS: fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid), lab: lab}
	// unshare has made the namespace once sleep runs in it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		host, _ := os.Readlink("/proc/self/ns/mnt")
		ns, err := os.Readlink(s.mntNS)
		if err == nil && ns != host {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", holder.Process.Pid)); strings.HasSuffix(exe, "/sleep") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --mount never ran sleep in its namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	work := filepath.Join(dir, "work")
	cache := CacheDir(t)
	script := strings.Join([]string{
		"set -e",
		"mkdir -p " + work + "/etc " + work + "/varlib " + work + "/varcache",
		"mount -t overlay overlay -o ro,lowerdir=" + root + "/usr/bin:/usr/bin /usr/bin",
		"mount -t overlay overlay -o lowerdir=/etc,upperdir=" + root + "/etc,workdir=" + work + "/etc /etc",
		"mount -t overlay overlay -o lowerdir=/var/lib,upperdir=" + root + "/var/lib,workdir=" + work + "/varlib /var/lib",
		"mount -t overlay overlay -o lowerdir=/var/cache,upperdir=" + root + "/var/cache,workdir=" + work + "/varcache /var/cache",
		"mkdir -p /var/cache/sealroot " + cache,
		"mount --bind " + cache + " /var/cache/sealroot",
		"mount -t tmpfs -o mode=0755 tmpfs /run",
		"mkdir -m 0700 /run/sealroot", // the unit's RuntimeDirectory
	}, "\n")
	cmd := exec.CommandContext(ctx, "nsenter", "--mount="+s.mntNS, "--", "/bin/sh", "-c", script)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount the installed root: %v\n%s", err, b)
	}
	// Nothing from the checkout or the Go toolchain is reachable.
	if out, err := s.command(ctx, "/bin/sh", "-c", "command -v go; command -v sealroot").Output(); err != nil || string(out) != "/usr/bin/sealroot\n" {
		t.Fatalf("in the installed root, `command -v go; command -v sealroot` = %q, %v; want only /usr/bin/sealroot", out, err)
	}
	return s
}

// command runs argv in the lab's network namespace and the installed
// root's mount namespace, from /, with a system PATH.
func (s *installedServer) command(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + s.lab.NS.Path, "--mount=" + s.mntNS, "--"}, argv...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	ownProcessGroup(cmd)
	return cmd
}

// run runs a command of the README and returns its standard output.
func (s *installedServer) run(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := s.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Logf("$ %s", strings.Join(args, " "))
	err := cmd.Run()
	t.Logf("%s%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return stdout.String()
}

// startUnit does what `systemctl enable --now sealroot` does with the
// package's unit: ExecStartPre, then ExecStart until the test ends, and
// waits until the admin socket answers.
func (s *installedServer) startUnit(ctx context.Context, t *testing.T) {
	t.Helper()
	units, _ := filepath.Glob(filepath.Join(s.root, "*/systemd/system/sealroot.service"))
	more, _ := filepath.Glob(filepath.Join(s.root, "usr/*/systemd/system/sealroot.service"))
	units = append(units, more...)
	if len(units) != 1 {
		t.Fatalf("the package has units %v, want one sealroot.service", units)
	}
	f, err := os.Open(units[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pre, start []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		switch {
		case ok && k == "ExecStartPre":
			pre = strings.Fields(v)
		case ok && k == "ExecStart":
			start = strings.Fields(v)
		}
	}
	if len(start) == 0 {
		t.Fatalf("%s has no ExecStart", units[0])
	}
	if len(pre) > 0 {
		s.run(ctx, t, pre...)
	}
	t.Logf("$ %s", strings.Join(start, " "))
	cmd := s.command(context.Background(), start...)
	w := testenv.Writer(t, "sealroot: ")
	cmd.Stdout, cmd.Stderr = w, w
	p, err := startProc(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := s.command(rctx, "sealroot", "machine", "list").Run(); err == nil {
			return
		}
		select {
		case <-rctx.Done():
			t.Fatal("sealroot serve from the installed root never answered on /run/sealroot/admin.sock")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var reFingerprintColumn = regexp.MustCompile(`^[0-9a-f]{16}$`)

// pendingFingerprint is the one fingerprint in `machine list --pending`.
func pendingFingerprint(t *testing.T, out string) string {
	t.Helper()
	var fps []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && reFingerprintColumn.MatchString(f[0]) {
			fps = append(fps, f[0])
		}
	}
	if len(fps) != 1 {
		t.Fatalf("machine list --pending shows %d fingerprints (%s), want 1:\n%s", len(fps), strconv.Quote(strings.Join(fps, " ")), out)
	}
	return fps[0]
}
