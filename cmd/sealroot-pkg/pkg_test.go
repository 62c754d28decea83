package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// TestDeb builds the package as `make deb` does, inspects it with
// dpkg-deb, unpacks it into a scratch root and, from that root alone (no
// Go in PATH, no checkout in the working directory), runs `sealroot
// version` and `sealroot initramfs build` with the embedded agent.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole package (minutes)")
	}
	makeTool := testenv.LookTool(t, "make")
	dpkgDeb := testenv.LookTool(t, "dpkg-deb")
	out := t.TempDir()
	cmd := exec.Command(makeTool, "-C", "../..", "deb", "DEB_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "sealroot_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %v, want one sealroot_<version>_amd64.deb", debs)
	}
	deb := debs[0]

	info := dpkg(t, dpkgDeb, "-I", deb)
	for _, want := range []string{"Package: sealroot\n", "Architecture: amd64\n", "Depends: ipxe", "Recommends: nfs-ganesha",
		"postinst", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	list := dpkg(t, dpkgDeb, "-c", deb)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`-rwxr-xr-x root/root +\d+ .* \./usr/bin/sealroot\n`),
		regexp.MustCompile(`drwx------ root/root +0 .* \./var/lib/sealroot/\n`),
		regexp.MustCompile(`\./usr/lib/systemd/system/sealroot\.service\n`),
		regexp.MustCompile(`\./etc/sealroot/sealroot\.example\.json\n`),
		regexp.MustCompile(`\./usr/share/bash-completion/completions/sealroot\n`),
		regexp.MustCompile(`\./usr/share/zsh/vendor-completions/_sealroot\n`),
		regexp.MustCompile(`\./usr/share/doc/sealroot/configuration\.md\n`),
	} {
		if !want.MatchString(list) {
			t.Errorf("dpkg-deb -c lacks %s:\n%s", want, list)
		}
	}

	root := t.TempDir()
	dpkg(t, dpkgDeb, "-x", deb, root)
	unit, _ := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/sealroot.service"))
	for _, want := range []string{"Type=notify\n", "Restart=on-failure\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "DeviceAllow=/dev/net/tun rw\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	sealroot := filepath.Join(root, "usr/bin/sealroot")
	// No Go, no checkout: a PATH of system directories only, an empty
	// working directory.
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + t.TempDir()}
	if _, err := exec.LookPath("/usr/bin/go"); err == nil {
		t.Log("note: /usr/bin/go exists; the test relies on the embedded agent log line instead")
	}
	work := t.TempDir()
	runIn := func(args ...string) string {
		t.Helper()
		c := exec.Command(sealroot, args...)
		c.Env, c.Dir = env, work
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("sealroot %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if v := runIn("version"); !strings.HasPrefix(v, "sealroot ") || strings.Contains(v, "dev (commit unknown)") {
		t.Errorf("packaged sealroot version = %q, want a stamped version", v)
	}
	if msg := runIn("config", "check", filepath.Join(root, "etc/sealroot/sealroot.example.json")); !strings.HasSuffix(msg, ": ok\n") {
		t.Errorf("example configuration: %s", msg)
	}
	modroot, err := filepath.Abs("../../initramfs/testdata/modroot")
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(work, "initramfs.cpio.gz")
	log := runIn("initramfs", "build", "--out", img, "--modules-root", modroot, "--kernel-version", "1.0-test", "--modules", "virtio_net")
	for _, want := range []string{"using the embedded binary: binary=sealroot-agent", "using the embedded binary: binary=sealroot-init", "initramfs: " + img} {
		if !strings.Contains(log, want) {
			t.Errorf("initramfs build output lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "building from source") {
		t.Errorf("the packaged sealroot built from source:\n%s", log)
	}
}

func dpkg(t *testing.T, tool string, args ...string) string {
	t.Helper()
	b, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{"1.2.0": "1.2.0", "v1.2.0-rc1": "1.2.0+rc1", "de65030-dirty": "0~de65030+dirty", "4ffe5cc-dirty": "4ffe5cc+dirty", "abc123": "0~abc123", "dev": "0~dev"} {
		if got := debVersion(in); got != want {
			t.Errorf("debVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
