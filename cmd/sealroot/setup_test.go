package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/test/testenv"
)

// TestSetup runs `sealroot setup` on a veth in a network namespace the
// test creates, twice: the first run writes a valid configuration for
// the interface's address, the PKI and the artifacts; the second changes
// nothing (same CA, same configuration, same initramfs bytes). It leaves
// the UKI to the server.
func TestSetup(t *testing.T) {
	testenv.RequireRoot(t, "a network namespace")
	ipTool := testenv.LookTool(t, "ip")
	bin := buildSealroot(t)
	ns := fmt.Sprintf("srsetup%d", os.Getpid())
	veth := fmt.Sprintf("srs%d", os.Getpid()%100000)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "add", veth, "type", "veth", "peer", "name", veth + "p"},
		{"-n", ns, "addr", "add", "10.218.0.1/24", "dev", veth},
		{"-n", ns, "link", "set", veth, "up"},
	} {
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { exec.Command(ipTool, "netns", "del", ns).Run() })
		}
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, bytes.Repeat([]byte("not a real kernel "), 64), 0o644)
	modroot, _ := filepath.Abs("../../initramfs/testdata/modroot")
	cfgPath := filepath.Join(dir, "etc/sealroot.json")
	state := filepath.Join(dir, "state")
	setup := func() string {
		t.Helper()
		cmd := exec.Command(ipTool, "netns", "exec", ns, bin, "setup", "--interface", veth,
			"--config", cfgPath, "--state-dir", state, "--kernel-cache", filepath.Join(dir, "cache"),
			"--modules-root", modroot, "--kernel-version", "1.0-test", "--kernel", kernel, "--modules", "virtio_net")
		cmd.Dir = "../.." // the agent is built from source: no package build here
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sealroot setup: %v\n%s", err, out)
		}
		return string(out)
	}
	out := setup()
	for _, want := range []string{"interface: " + veth + ", address 10.218.0.1\n", "config: wrote " + cfgPath,
		"pki: created the CA", "initramfs: " + filepath.Join(state, "artifacts/initramfs.cpio.gz"), "systemctl enable --now sealroot"} {
		if !strings.Contains(out, want) {
			t.Errorf("first setup output lacks %q:\n%s", want, out)
		}
	}
	cfg, err := config.LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("setup wrote an invalid configuration: %v", err)
	}
	if b := cfg.Boot; b == nil || b.ServerIP != "10.218.0.1" || b.DHCPInterface != veth || b.DHCPMode != "proxy" || cfg.Tunnel == nil || cfg.ISCSI == nil {
		t.Errorf("configuration = %+v, boot %+v; want ProxyDHCP on %s at 10.218.0.1, a tunnel and iSCSI", cfg, cfg.Boot, veth)
	}
	// The UKI is the server's to build (and rebuild when the command line
	// changes): setup names none and builds none.
	if b := cfg.Boot; b != nil && (b.UKI != "" || (b.EFIBoot != "" && b.EFIBoot != config.EFIBootUKI)) {
		t.Errorf("boot uki %q, efi_boot %q; want neither set, so the server builds the UKI", b.UKI, b.EFIBoot)
	}
	if _, err := os.Stat(filepath.Join(state, "artifacts", config.DefaultUKI)); !os.IsNotExist(err) {
		t.Errorf("setup wrote %s (stat: %v); the server builds it", config.DefaultUKI, err)
	}
	if !strings.Contains(out, "uefi: serve builds") {
		t.Errorf("setup output does not say the server builds the UKI:\n%s", out)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, p := range []string{cfgPath, filepath.Join(state, "pki/ca.crt"), filepath.Join(state, "pki/ca.key"),
			filepath.Join(state, "artifacts/initramfs.cpio.gz"), filepath.Join(state, "artifacts/vmlinuz")} {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("setup did not write %s: %v", p, err)
			}
			m[p] = string(b)
		}
		return m
	}
	before := snapshot()

	out = setup()
	for _, want := range []string{"exists, kept as it is", "pki: existing CA kept; the server certificate names 10.218.0.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("second setup output lacks %q:\n%s", want, out)
		}
	}
	after := snapshot()
	for p := range before {
		if before[p] != after[p] {
			t.Errorf("second setup changed %s", p)
		}
	}
}
