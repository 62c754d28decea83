package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/initramfs"
	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/uki"
)

type setupArgs struct {
	iface        string
	config       string
	stateDir     string
	tunnelPrefix string
	kernelCache  string
	modulesRoot  string
	kernelVer    string
	kernel       string
	modules      []string
	ukiStub      string
}

func newSetupCmd(e *env) *cobra.Command {
	var a setupArgs
	c := &cobra.Command{
		Use:   "setup --interface IF",
		Short: "Configure this server for the boot network on IF: configuration, PKI, initramfs, kernel",
		Long: `Set this server up to boot machines on the network of interface IF, next to
the site's DHCP server (ProxyDHCP: it keeps handing out addresses):

  - detects this server's IPv4 address on IF;
  - writes the configuration (--config) with ProxyDHCP on IF, TFTP, HTTP, the
    WireGuard tunnel, iSCSI roots, and NFS roots when nfs-ganesha is installed;
    an existing configuration is kept as it is;
  - creates the CA and server certificate, or keeps the existing CA (it is
    never replaced; the server certificate is renewed when it lacks the address);
  - builds the initramfs with the agent pinned to this CA and puts it and
    the kernel where serve reads them; for UEFI machines serve builds the
    UKI from them and the command line (boot.efi_boot "uki"), and builds it
    again when one of them changes.

Running it again changes nothing that is already right. Without
--modules-root, Debian's current kernel is downloaded (apt-get) into
--kernel-cache.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runSetup(c, e, a) },
	}
	f := c.Flags()
	f.StringVar(&a.iface, "interface", "", "network `interface` of the boot network (required)")
	f.StringVar(&a.config, "config", DefaultConfig, "configuration `file` to write")
	f.StringVar(&a.stateDir, "state-dir", DefaultStateDir, "state `directory`")
	f.StringVar(&a.tunnelPrefix, "tunnel-prefix", "10.200.0.0/16", "WireGuard tunnel `network` (must not be used on the site)")
	f.StringVar(&a.kernelCache, "kernel-cache", "/var/cache/sealroot", "kernel download cache `dir`")
	f.StringVar(&a.modulesRoot, "modules-root", "", "root `dir` with lib/modules/<kver> (default: fetch Debian's kernel)")
	f.StringVar(&a.kernelVer, "kernel-version", "", "kernel `release` under --modules-root")
	f.StringVar(&a.kernel, "kernel", "", "kernel `file` (vmlinuz) to serve with --modules-root")
	f.StringSliceVar(&a.modules, "modules", initramfs.DefaultModules(), "kernel modules to ship with their dependencies")
	f.StringVar(&a.ukiStub, "uki-stub", uki.DefaultStub, "systemd EFI stub `file` serve builds the UKI with (boot.uki_stub)")
	return c
}

func runSetup(c *cobra.Command, e *env, a setupArgs) error {
	if a.iface == "" {
		return cmdline.Usagef(c, "--interface is required")
	}
	if a.modulesRoot != "" && (a.kernelVer == "" || a.kernel == "") {
		return cmdline.Usagef(c, "--modules-root needs --kernel-version and --kernel")
	}
	ip, err := interfaceIPv4(a.iface)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "interface: %s, address %s\n", a.iface, ip)

	cfg, err := setupConfig(e, a, ip)
	if err != nil {
		return err
	}
	if err := setupPKI(e, a.stateDir, ip); err != nil {
		return err
	}
	if err := setupArtifacts(c, e, a, cfg, ip); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, `
sealroot is set up. Next:
  systemctl enable --now sealroot       # start the daemon (journalctl -u sealroot)
  power on a machine on %s's network, set to network (PXE) boot
  sealroot machine list --pending       # the machine, with its MACs and serial number
  sealroot machine approve FINGERPRINT  # the fingerprint on its screen (8+ hex digits suffice)
`, a.iface)
	return nil
}

// interfaceIPv4 is the first global IPv4 address on the interface.
func interfaceIPv4(name string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			if ok && ip.Is4() && ip.IsGlobalUnicast() {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address: configure the boot network's address first", name)
}

// setupConfig writes the configuration when there is none and returns the
// configuration in effect (an existing file is kept and must be valid).
func setupConfig(e *env, a setupArgs, ip netip.Addr) (*config.Config, error) {
	if _, err := os.Stat(a.config); err == nil {
		cfg, err := config.LoadConfig(a.config)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(e.Stdout, "config: %s exists, kept as it is\n", a.config)
		if cfg.Boot == nil {
			return nil, fmt.Errorf("config %s has no boot section: add one or move the file away and run setup again", a.config)
		}
		return cfg, nil
	}
	boot := &config.BootConfig{ServerIP: ip.String(), DHCPInterface: a.iface, DHCPMode: "proxy",
		ArtifactsDir: filepath.Join(a.stateDir, "artifacts"), Kernel: "vmlinuz", Initrd: "initramfs.cpio.gz"}
	if a.ukiStub != uki.DefaultStub {
		boot.UKIStub = a.ukiStub
	}
	cfg := &config.Config{
		LogLevel: "info",
		StateDir: a.stateDir,
		Boot:     boot,
		Tunnel:   &config.TunnelConfig{Prefix: a.tunnelPrefix, Endpoint: netip.AddrPortFrom(ip, 51820).String()},
		ISCSI:    &config.ISCSIConfig{},
	}
	nfs := "no (nfs-ganesha not installed)"
	if _, err := exec.LookPath("ganesha.nfsd"); err == nil {
		cfg.NFS = &config.NFSConfig{}
		nfs = "yes"
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("setup made an invalid configuration: %w", err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(a.config), 0o755); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(a.config, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.Stdout, "config: wrote %s (ProxyDHCP on %s, TFTP, HTTP :8080, tunnel %s, iSCSI, NFS %s)\n",
		a.config, a.iface, a.tunnelPrefix, nfs)
	return cfg, nil
}

// setupPKI creates the CA, or keeps it and renews the server certificate
// when it does not name ip.
func setupPKI(e *env, stateDir string, ip netip.Addr) error {
	dir := pkiDir(stateDir)
	err := pki.Init(dir, pki.InitOptions{DNSNames: []string{"sealroot"}, IPs: []net.IP{ip.AsSlice()}})
	switch {
	case err == nil:
		fmt.Fprintf(e.Stdout, "pki: created the CA and the server certificate in %s\n", dir)
		return nil
	case !errors.Is(err, pki.ErrExists):
		return err
	}
	tc, err := pki.LoadServer(dir)
	if err != nil {
		return err
	}
	leaf, err := pki.ServerLeaf(tc)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(leaf.IPAddresses, func(a net.IP) bool { return a.Equal(ip.AsSlice()) }) {
		fmt.Fprintf(e.Stdout, "pki: existing CA kept; the server certificate names %s\n", ip)
		return nil
	}
	ips := append(slices.Clone(leaf.IPAddresses), ip.AsSlice())
	if _, err := pki.Renew(dir, pki.RenewOptions{DNSNames: leaf.DNSNames, IPs: ips}); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "pki: existing CA kept; server certificate renewed to name %s\n", ip)
	return nil
}

// agentConfig is the agent's configuration file (package agent's Config;
// the sealroot binary does not link the agent).
type agentConfig struct {
	Servers    []string `json:"servers"`
	ServerName string   `json:"server_name"`
	CAPEM      string   `json:"ca_pem"`
}

// setupArtifacts builds the initramfs for this server and CA into the
// artifacts directory, with the kernel. The UKI is serve's to build.
func setupArtifacts(c *cobra.Command, e *env, a setupArgs, cfg *config.Config, ip netip.Addr) error {
	b := cfg.Boot
	dir := b.ArtifactsDir
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, "artifacts")
	}
	name := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(pkiDir(a.stateDir), pki.CACertFile))
	if err != nil {
		return err
	}
	attest := cfg.AttestAddr
	if attest == "" || strings.HasPrefix(attest, ":") {
		attest = ip.String() + name(attest, ":4433")
	}
	ac, err := json.MarshalIndent(agentConfig{Servers: []string{attest}, ServerName: ip.String(), CAPEM: string(ca)}, "", "  ")
	if err != nil {
		return err
	}
	acPath := filepath.Join(a.stateDir, "agent.json")
	if err := writeFileAtomic(acPath, ac, 0o644); err != nil {
		return err
	}
	initrd := name(b.Initrd, "initramfs.cpio.gz")
	comp := "none"
	for c, ext := range initramfsExt {
		if ext != "" && strings.HasSuffix(initrd, ext) {
			comp = c
		}
	}
	args := initramfsBuildArgs{
		out: filepath.Join(dir, initrd), agentPkg: "./cmd/sealroot-agent", initPkg: "./cmd/sealroot-init",
		agentConfig: acPath, cacheDir: a.kernelCache, modulesRoot: a.modulesRoot, kernelVer: a.kernelVer,
		modules: a.modules, compression: comp,
	}
	kernel, err := buildInitramfs(c, e, args)
	if err != nil {
		return err
	}
	src := a.kernel
	if kernel != nil {
		src = kernel.VMLinuz
	}
	k, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, name(b.Kernel, "vmlinuz"))
	if err := writeFileAtomic(dst, k, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "kernel: %s\n", dst)
	setupUKINote(e, b)
	return nil
}

// setupUKINote says who makes what UEFI machines boot.
func setupUKINote(e *env, b *config.BootConfig) {
	switch {
	case b.EFIBoot == config.EFIBootKernel:
		fmt.Fprintf(e.Stdout, "uefi: machines boot the kernel and initramfs (efi_boot %q, unmeasured)\n", b.EFIBoot)
	case b.UKI != "":
		fmt.Fprintf(e.Stdout, "uefi: machines boot your UKI %s (boot.uki)\n", b.UKI)
	default:
		stub := b.UKIStub
		if stub == "" {
			stub = uki.DefaultStub
		}
		if _, err := os.Stat(stub); err != nil {
			fmt.Fprintf(e.Stdout, "uefi: serve builds the UKI with the stub %s, which is missing: install systemd-boot-efi or set boot.uki_stub\n", stub)
			return
		}
		fmt.Fprintf(e.Stdout, "uefi: serve builds %s from the kernel, initramfs and command line (stub %s)\n", config.DefaultUKI, stub)
	}
}

// writeFileAtomic replaces path with data unless it already holds it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".setup-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
