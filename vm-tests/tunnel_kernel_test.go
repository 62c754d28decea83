package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/u-root/mkuimage/cpio"

	"github.com/sealroot/sealroot/initramfs"
)

// TestTunnelKernelInGuest runs server/tunnel's tests and benchmark inside
// a guest whose Debian kernel has WireGuard (the host may not): the
// kernel-engine link-security tests (under CI=true, so a fallback to
// wireguard-go fails them), then BenchmarkThroughput for every server end
// (kernel WireGuard, wireguard-go on a TUN, netstack) against plain TCP on
// the same veth, all inside the guest. It prints the guest's ratio lines;
// under TCG they rank the paths against each other, not real hardware.
func TestTunnelKernelInGuest(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	kernel, initrd := tunnelBenchInitramfs(ctx, t)
	lab := NewLab(t, LabOptions{})
	vm := lab.NewVM(t, VMOptions{Name: "tunnel", Kernel: kernel, Initrd: initrd, MemoryMB: 1024,
		ExtraArgs: []string{"-smp", "2"}})
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if m := mustExpect(ctx, t, vm, `tunnelbench: test exit=(-?\d+)`); m[1] != "0" {
		t.Errorf("TestTunnel/kernel in the guest exited %s (console: %s)", m[1], vm.ConsoleLog())
	}
	if m := mustExpect(ctx, t, vm, `tunnelbench: bench exit=(-?\d+)`); m[1] != "0" {
		t.Errorf("BenchmarkThroughput in the guest exited %s (console: %s)", m[1], vm.ConsoleLog())
	}
	mustExpect(ctx, t, vm, `tunnelbench: powering off`)
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	console, err := os.ReadFile(vm.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`BenchmarkThroughput/\w+(-\d+)?: plain \d+ MB/s, tunnel \d+ MB/s|ratio: tunnel/plain=[0-9.]+`)
	for _, line := range re.FindAll(console, -1) {
		t.Logf("guest: %s", line)
	}
}

// tunnelBenchInitramfs builds testdata/tunnelbench as /init with the
// modules of the tunnel lab, and appends the server/tunnel test binary.
func tunnelBenchInitramfs(ctx context.Context, t *testing.T) (kernel, initrd string) {
	t.Helper()
	k, err := initramfs.FetchKernel(ctx, CacheDir(t))
	if err != nil {
		t.Fatalf("vmtest: fetch kernel: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tunnelbench")
	if err := initramfs.BuildAgent(ctx, "github.com/sealroot/sealroot/vm-tests/testdata/tunnelbench", bin); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	testBin := filepath.Join(dir, "tunnel.test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-o", testBin, "github.com/sealroot/sealroot/server/tunnel")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c server/tunnel: %v: %s", err, out)
	}
	var base bytes.Buffer
	if _, err := initramfs.Build(ctx, initramfs.Options{
		AgentBinary: bin, ModulesRoot: k.ModulesRoot, KernelVersion: k.Version,
		Modules: []string{"virtio_net", "virtio_pci", "virtio_rng", "wireguard", "tun", "veth", "bridge"},
		// gzip: an archive follows (see ISCSIBoot).
		Compression: "gzip",
	}, &base); err != nil {
		t.Fatalf("vmtest: build tunnelbench initramfs: %v", err)
	}
	test, err := os.ReadFile(testBin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := AppendArchive(base.Bytes(), cpio.StaticRecord(test, cpio.Info{Name: "tunnel.test", Mode: cpio.S_IFREG | 0o755}))
	if err != nil {
		t.Fatal(err)
	}
	initrd = filepath.Join(dir, "tunnelbench.cpio")
	if err := os.WriteFile(initrd, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return k.VMLinuz, initrd
}
