package initramfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

// integrationEnv opts in to tests that download a Debian kernel (~70 MB,
// cached in build/cache at the repository root).
const integrationEnv = "SEALROOT_INTEGRATION"

// fetchTestKernel returns the cached Debian kernel, fetching it if needed.
// It skips when the integration tests are not enabled or apt is unusable,
// except under CI=true.
func fetchTestKernel(t *testing.T) *Kernel {
	t.Helper()
	if os.Getenv(integrationEnv) == "" {
		t.Skipf("set %s=1 to download and use a Debian kernel", integrationEnv)
	}
	testenv.LookTool(t, "apt-get")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := FetchKernel(ctx, filepath.Join("..", "build", "cache"))
	if err != nil {
		testenv.Unavailable(t, "FetchKernel (apt unreachable?): %v", err)
	}
	return k
}

func TestIntegrationFetchKernel(t *testing.T) {
	k := fetchTestKernel(t)
	t.Logf("kernel package %s %s, uname -r %s", k.Package, k.PackageVersion, k.Version)
	t.Logf("vmlinuz %s", k.VMLinuz)
	t.Logf("modules root %s", k.ModulesRoot)
	for _, p := range []string{k.VMLinuz, filepath.Join(k.ModulesRoot, "lib", "modules", k.Version, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("FetchKernel: %v", err)
		}
	}
}

// integrationAgent builds the real agent when cmd/sealroot-agent has Go
// files (SEALROOT_AGENT_PKG overrides), else the testdata stand-in.
func integrationAgent(t *testing.T) string {
	t.Helper()
	pkg := os.Getenv("SEALROOT_AGENT_PKG")
	if pkg == "" {
		if m, _ := filepath.Glob("../cmd/sealroot-agent/*.go"); len(m) > 0 {
			pkg = "../cmd/sealroot-agent"
		}
	}
	if pkg == "" {
		t.Logf("agent: testdata/hello (cmd/sealroot-agent has no Go files yet)")
		return testAgent(t)
	}
	out := filepath.Join(t.TempDir(), "sealroot-agent")
	if err := BuildAgent(context.Background(), pkg, out); err != nil {
		t.Fatalf("BuildAgent: %v", err)
	}
	st, _ := os.Stat(out)
	t.Logf("agent: %s (%d bytes)", pkg, st.Size())
	return out
}

func TestIntegrationBuildDefault(t *testing.T) {
	k := fetchTestKernel(t)
	first := filepath.Join(t.TempDir(), "sealroot-init")
	if err := BuildAgent(context.Background(), "../cmd/sealroot-init", first); err != nil {
		t.Fatalf("BuildAgent: %v", err)
	}
	opts := Options{
		AgentBinary:   integrationAgent(t),
		InitBinary:    first,
		ModulesRoot:   k.ModulesRoot,
		KernelVersion: k.Version,
		AgentConfig:   []byte(testAgentConfig),
	}
	for _, comp := range []string{"gzip", "zstd", "xz"} {
		opts.Compression = comp
		_, res := build(t, opts)
		t.Logf("%s: %d bytes (%.2f MiB), cpio %d bytes, %d modules, sha256 %s",
			comp, res.Bytes, float64(res.Bytes)/(1<<20), res.CPIOBytes, len(res.Modules), res.SHA256)
		if comp != DefaultCompression {
			continue
		}
		t.Logf("modules in load order: %q", res.Modules)
		t.Logf("built in: %q; unresolved soft deps: %q", res.Builtin, res.UnresolvedSoftdeps)
		if res.Bytes > 6<<20 {
			t.Errorf("%s initramfs is %d bytes, over the 6 MiB budget", comp, res.Bytes)
		}
		checkAgainstModprobe(t, k, res.Modules)
	}
}

// checkAgainstModprobe checks that every module modprobe would load for the
// default list (hard and soft dependencies) is shipped.
func checkAgainstModprobe(t *testing.T, k *Kernel, shipped []string) {
	t.Helper()
	if _, err := exec.LookPath("modprobe"); err != nil {
		t.Logf("modprobe not installed; skipping the cross-check")
		return
	}
	have := map[string]bool{}
	for _, m := range shipped {
		have[m] = true
	}
	for _, m := range DefaultModules() {
		out, err := exec.Command("modprobe", "-d", k.ModulesRoot, "-S", k.Version, "--show-depends", m).Output()
		if err != nil {
			t.Errorf("modprobe --show-depends %s: %v", m, err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "insmod" && !have[modName(f[1])] {
				t.Errorf("modprobe loads %s for %s; not shipped", modName(f[1]), m)
			}
		}
	}
}

// TestIntegrationBootLoadsModules boots the Debian kernel under QEMU (TCG)
// with an initramfs whose /init loads sealroot.preload in order, as the
// agent does: every shipped module must load (no missing dependency).
func TestIntegrationBootLoadsModules(t *testing.T) {
	k := fetchTestKernel(t)
	qemu := testenv.LookTool(t, "qemu-system-x86_64")
	dir := t.TempDir()
	agent := filepath.Join(dir, "loadmods")
	if err := BuildAgent(context.Background(), "./testdata/loadmods", agent); err != nil {
		t.Fatalf("BuildAgent: %v", err)
	}
	img, res := build(t, Options{AgentBinary: agent, ModulesRoot: k.ModulesRoot, KernelVersion: k.Version})
	initrd := filepath.Join(dir, "initramfs.cpio.gz")
	if err := os.WriteFile(initrd, img, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// -cpu max: crc32c_intel and crct10dif_pclmul need SSE4.2/PCLMULQDQ and
	// fail with ENODEV on the default qemu64 CPU.
	out, err := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot",
		"-nic", "none", "-kernel", k.VMLinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet").CombinedOutput()
	want := fmt.Sprintf("sealroot-test: loaded %d modules, 0 failed", len(res.Modules))
	if !strings.Contains(string(out), want) {
		t.Fatalf("console lacks %q (qemu: %v):\n%s", want, err, out)
	}
	t.Logf("%s", want)
}
