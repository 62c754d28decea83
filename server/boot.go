package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/ipxe"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/boot/dhcp"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
	"github.com/sealroot/sealroot/server/boot/tftp"
	"github.com/sealroot/sealroot/server/boot/ukibuild"
	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/uki"
)

// BootConfig configures the network boot services. The iPXE script, the
// kernel command line and the artifacts carry no secret: every machine
// gets the same bytes, and credentials travel only in the attested session.
type BootConfig struct {
	// ServerIP is this server's IPv4 address on the boot network; it goes
	// into DHCP answers and boot URLs, and the HTTP and TFTP services
	// listen on it.
	// Default: none (required).
	// Example: "192.168.1.10".
	ServerIP string `json:"server_ip"`
	// HTTPPort serves boot scripts and artifacts.
	// Default: 8080.
	// Example: 8080.
	HTTPPort uint16 `json:"http_port,omitempty"`
	// TFTPPort serves the iPXE binaries to firmware.
	// Default: 69.
	// Example: 69.
	TFTPPort uint16 `json:"tftp_port,omitempty"`
	// DisableTFTP turns the TFTP service off (firmware that boots iPXE
	// from elsewhere, or UEFI HTTP boot).
	// Default: false.
	// Example: true.
	DisableTFTP bool `json:"disable_tftp,omitempty"`
	// DHCPInterface runs DHCP on that network interface; empty: no DHCP
	// (another server sends machines to iPXE).
	// Default: "" (no DHCP).
	// Example: "eno1".
	DHCPInterface string `json:"dhcp_interface,omitempty"`
	// DHCPMode is "proxy" (next to the site's DHCP server, which keeps
	// handing out addresses) or "full" (an isolated lab network; pool is
	// then required).
	// Default: "proxy".
	// Example: "full".
	DHCPMode string `json:"dhcp_mode,omitempty"`
	// Pool is the address pool of full-DHCP mode.
	Pool *PoolConfig `json:"pool,omitempty"`
	// NoProbe, in full mode, offers addresses without first asking with
	// ARP whether a host already uses them. Leases are kept in the state
	// store either way.
	// Default: false (probe).
	// Example: true.
	NoProbe bool `json:"dhcp_no_probe,omitempty"`
	// ArtifactsDir holds the kernel, initramfs and UKIs served over HTTP
	// (SIGHUP rereads it).
	// Default: "<state_dir>/artifacts".
	// Example: "/var/lib/sealroot/artifacts".
	ArtifactsDir string `json:"artifacts_dir,omitempty"`
	// IPXEDir holds Debian's iPXE binaries (package ipxe).
	// Default: "/usr/lib/ipxe".
	// Example: "/usr/lib/ipxe".
	IPXEDir string `json:"ipxe_dir,omitempty"`
	// Kernel names the kernel in artifacts_dir that BIOS clients boot,
	// and the kernel of the UKI the server builds for UEFI clients.
	// Default: "vmlinuz".
	// Example: "vmlinuz-6.1".
	Kernel string `json:"kernel,omitempty"`
	// Initrd names the initramfs in artifacts_dir booted with kernel.
	// Default: "initramfs.cpio.gz".
	// Example: "initramfs.cpio.zst".
	Initrd string `json:"initrd,omitempty"`
	// EFIBoot is what UEFI clients boot: "uki", a unified kernel image,
	// so the firmware and systemd-stub measure the initramfs and the
	// command line; or "kernel", kernel and initrd loaded by iPXE, which
	// leaves the initramfs unmeasured, so the server refuses such boots
	// under every policy but identity-only.
	// Default: "uki".
	// Example: "kernel".
	EFIBoot string `json:"efi_boot,omitempty"`
	// UKI names a UKI the operator provides in artifacts_dir, served as
	// is. When empty the server builds uki.efi from kernel, initrd and
	// cmdline with uki_stub at start and whenever one of them changes.
	// Default: "" (the server builds uki.efi).
	// Example: "signed-uki.efi".
	UKI string `json:"uki,omitempty"`
	// UKIStub is the systemd EFI stub the server builds the UKI with.
	// Default: "/usr/lib/systemd/boot/efi/linuxx64.efi.stub" (Debian's systemd-boot-efi).
	// Example: "/opt/stubs/linuxx64.efi.stub".
	UKIStub string `json:"uki_stub,omitempty"`
	// Cmdline is the kernel command line: static, public, no secrets.
	// The default shows the agent on a serial port and on the screen (the
	// last console is /dev/console).
	// Default: "console=ttyS0 console=tty0 panic=10".
	// Example: "console=ttyS1,115200 console=tty0 panic=10".
	Cmdline string `json:"cmdline,omitempty"`
	// HTTPBoot names the artifact (in artifacts_dir) that UEFI firmware
	// HTTP boot clients load directly, without TFTP or iPXE: a signed UKI
	// with its command line built in (or an iPXE EFI binary copied there).
	// Empty: HTTP boot clients are not answered.
	// Default: "" (not answered).
	// Example: "signed-uki.efi".
	HTTPBoot string `json:"http_boot,omitempty"`
}

// EFI boot modes (BootConfig.EFIBoot).
const (
	EFIBootUKI    = "uki"
	EFIBootKernel = "kernel"
)

// DefaultUKI is the name of the UKI the server builds in ArtifactsDir.
const DefaultUKI = "uki.efi"

// DefaultCmdline is the kernel command line of boot.cmdline unset: the
// agent's lines on the first serial port and on the screen, which comes
// last so that it is /dev/console on machines without a serial port.
const DefaultCmdline = "console=ttyS0 console=tty0 panic=10"

// PoolConfig is the address pool of full-DHCP mode.
type PoolConfig struct {
	// Subnet is the network the pool's addresses are in.
	// Default: none (required).
	// Example: "10.77.0.0/24".
	Subnet string `json:"subnet"`
	// Start is the first address handed out.
	// Default: none (required).
	// Example: "10.77.0.100".
	Start string `json:"start"`
	// End is the last address handed out.
	// Default: none (required).
	// Example: "10.77.0.199".
	End string `json:"end"`
	// Router is the default gateway sent to clients.
	// Default: "" (none sent).
	// Example: "10.77.0.1".
	Router string `json:"router,omitempty"`
	// DNS lists the name servers sent to clients.
	// Default: [] (none sent).
	// Example: ["10.77.0.1"].
	DNS []string `json:"dns,omitempty"`
	// LeaseTime is the lease duration (Go duration).
	// Default: "1h".
	// Example: "30m".
	LeaseTime string `json:"lease_time,omitempty"`
}

func (b *BootConfig) defaults(stateDir string) {
	if b.HTTPPort == 0 {
		b.HTTPPort = 8080
	}
	if b.TFTPPort == 0 {
		b.TFTPPort = 69
	}
	if b.ArtifactsDir == "" {
		b.ArtifactsDir = filepath.Join(stateDir, "artifacts")
	}
	if b.IPXEDir == "" {
		b.IPXEDir = "/usr/lib/ipxe"
	}
	if b.Kernel == "" {
		b.Kernel = "vmlinuz"
	}
	if b.Initrd == "" {
		b.Initrd = "initramfs.cpio.gz"
	}
	if b.Cmdline == "" {
		b.Cmdline = DefaultCmdline
	}
	if b.EFIBoot == "" {
		b.EFIBoot = EFIBootUKI
	}
	if b.UKIStub == "" {
		b.UKIStub = uki.DefaultStub
	}
}

// efiUKI returns the name of the UKI UEFI clients boot ("" when they boot
// Kernel and Initrd) and whether the server builds it. b has its defaults.
func (b *BootConfig) efiUKI() (name string, build bool) {
	switch {
	case b.EFIBoot != EFIBootUKI:
		return "", false
	case b.UKI != "":
		return b.UKI, false
	}
	return DefaultUKI, true
}

// ukiBuilder returns the builder of the served UKI, or nil when the
// server builds none. b has its defaults.
func (b *BootConfig) ukiBuilder() *ukibuild.Builder {
	name, build := b.efiUKI()
	if !build {
		return nil
	}
	return ukibuild.New(ukibuild.Inputs{
		Stub:    b.UKIStub,
		Kernel:  filepath.Join(b.ArtifactsDir, b.Kernel),
		Initrd:  filepath.Join(b.ArtifactsDir, b.Initrd),
		Cmdline: b.Cmdline,
		Out:     filepath.Join(b.ArtifactsDir, name),
	})
}

// bootListeners are the boot services' sockets, bound by Listen.
type bootListeners struct {
	cfg     BootConfig // with defaults
	ip      netip.Addr
	scripts boothttp.ScriptFunc
	http    net.Listener
	tftp    net.PacketConn // nil with DisableTFTP
}

// listenBoot checks the boot configuration and binds the HTTP and TFTP
// listeners; the cleanup stack closes them.
func (s *Server) listenBoot() (*bootListeners, error) {
	bl := &bootListeners{cfg: *s.cfg.Boot}
	b := &bl.cfg
	b.defaults(s.cfg.StateDir)
	var err error
	if bl.ip, err = netip.ParseAddr(b.ServerIP); err != nil {
		return nil, fmt.Errorf("boot: server_ip: %w", err)
	}
	if err := ipxe.CheckCmdline(b.Cmdline); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	if b.EFIBoot != EFIBootUKI && b.EFIBoot != EFIBootKernel {
		return nil, fmt.Errorf("boot: efi_boot %q: want %s or %s", b.EFIBoot, EFIBootUKI, EFIBootKernel)
	}
	if b.EFIBoot == EFIBootKernel && b.UKI != "" {
		return nil, fmt.Errorf("boot: uki %q is set but efi_boot is %s", b.UKI, EFIBootKernel)
	}
	if b.EFIBoot == EFIBootKernel {
		s.logger.Warn("UEFI clients boot a kernel and initramfs that the TPM does not measure: the server refuses them under every policy but identity-only", "efi_boot", b.EFIBoot)
	}
	ukis := b.ukiBuilder()
	if ukis != nil {
		if _, err := os.Stat(b.UKIStub); err != nil {
			return nil, fmt.Errorf("boot: UKI stub: %w (install systemd-boot-efi, set boot.uki_stub, or set boot.efi_boot to %s)", err, EFIBootKernel)
		}
		// Missing parts are not fatal: the UKI is built before the first
		// UEFI boot script once they are in place.
		if _, err := ukis.Refresh(); err != nil {
			s.logger.Warn("cannot build the UKI yet: UEFI boots fail until it builds", "uki", DefaultUKI, "error", err)
		} else {
			s.logger.Info("built the UKI UEFI clients boot", "uki", DefaultUKI, "kernel", b.Kernel, "initrd", b.Initrd)
		}
	}
	bl.scripts = bootScripts(b, bl.ip, ukis, s.logger)
	// Render once now so a bad configuration fails at start, not at boot.
	if _, err := bl.scripts(context.Background(), boothttp.ScriptRequest{Arch: ipxe.ArchBIOS}); err != nil {
		return nil, fmt.Errorf("boot: iPXE script: %w", err)
	}
	if bl.http, err = net.Listen("tcp", net.JoinHostPort(bl.ip.String(), strconv.Itoa(int(b.HTTPPort)))); err != nil {
		return nil, fmt.Errorf("boot: http listener: %w", err)
	}
	s.onClose(bl.http.Close)
	if !b.DisableTFTP {
		if bl.tftp, err = net.ListenPacket("udp4", net.JoinHostPort(bl.ip.String(), strconv.Itoa(int(b.TFTPPort)))); err != nil {
			return nil, fmt.Errorf("boot: tftp listener: %w", err)
		}
		s.onClose(bl.tftp.Close)
	}
	return bl, nil
}

// serveBoot runs the boot services on bl's listeners, and the DHCP
// service when configured.
func (s *Server) serveBoot(ctx context.Context, bl *bootListeners, run func(string, func() error)) error {
	b := &bl.cfg
	s.bootIP = bl.ip
	s.setBoot(b, bl.scripts)
	run("boot http", func() error { return boothttp.ServeWith(ctx, bl.http, s.live, s.logger, s.limits.http) })
	if bl.tftp != nil {
		ts := s.limits.tftpServer(tftp.New(map[string]string{
			dhcp.DefaultBIOSFile: filepath.Join(b.IPXEDir, dhcp.DefaultBIOSFile),
			dhcp.DefaultEFIFile:  filepath.Join(b.IPXEDir, dhcp.DefaultEFIFile),
		}, s.logger))
		run("boot tftp", func() error { return ts.Serve(ctx, bl.tftp) })
	}
	if b.DHCPInterface == "" {
		return nil
	}
	dcfg, err := dhcpConfig(b, bl.ip)
	if err != nil {
		return err
	}
	if dcfg.Mode == dhcp.ModeFull {
		dcfg.Leases = dhcpLeases{s.store}
		if !b.NoProbe {
			p, err := dhcp.NewARPProber(b.DHCPInterface, 0)
			if err != nil {
				return fmt.Errorf("boot: %w", err)
			}
			s.onClose(p.Close)
			dcfg.Probe = p.Probe
		}
	}
	ds, err := dhcp.New(dcfg, s.logger)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	run("boot dhcp", func() error { return ds.Serve(ctx) })
	return nil
}

// bootScripts renders the iPXE script for a client arch. Its artifact URLs
// point below boothttp.ArtifactPrefix, where the HTTP handler serves
// b.ArtifactsDir.
// UEFI clients get the UKI when one is served; when the server builds it
// (ukis not nil), the UKI is rebuilt first if its parts changed.
func bootScripts(b *BootConfig, ip netip.Addr, ukis *ukibuild.Builder, logger hclog.Logger) boothttp.ScriptFunc {
	base := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(b.HTTPPort))) +
		strings.TrimSuffix(boothttp.ArtifactPrefix, "/")
	ukiName, _ := b.efiUKI()
	return func(ctx context.Context, r boothttp.ScriptRequest) ([]byte, error) {
		p := ipxe.Params{BaseURL: base, Arch: r.Arch, Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
		if r.Arch == ipxe.ArchEFIx64 && ukiName != "" {
			p = ipxe.Params{BaseURL: base, Arch: r.Arch, UKI: ukiName, Cmdline: b.Cmdline}
			if ukis != nil {
				built, err := ukis.Refresh()
				if err != nil {
					return nil, err
				}
				if built {
					logger.Info("boot artifacts changed: rebuilt the UKI", "uki", ukiName)
				}
			}
		}
		return ipxe.Render(p)
	}
}

func dhcpConfig(b *BootConfig, ip netip.Addr) (dhcp.Config, error) {
	cfg := dhcp.Config{Interface: b.DHCPInterface, ServerIP: ip, HTTPPort: b.HTTPPort}
	if b.HTTPBoot != "" {
		if err := ipxe.CheckName(b.HTTPBoot); err != nil {
			return cfg, fmt.Errorf("boot: http_boot: %w", err)
		}
		cfg.HTTPBootPath = boothttp.ArtifactPrefix + b.HTTPBoot
	}
	switch b.DHCPMode {
	case "", "proxy":
		cfg.Mode = dhcp.ModeProxy
		return cfg, nil
	case "full":
		cfg.Mode = dhcp.ModeFull
	default:
		return cfg, fmt.Errorf("boot: dhcp_mode %q: want proxy or full", b.DHCPMode)
	}
	if b.Pool == nil {
		return cfg, fmt.Errorf("boot: full DHCP needs a pool")
	}
	var err error
	p := &cfg.Pool
	if p.Subnet, err = netip.ParsePrefix(b.Pool.Subnet); err != nil {
		return cfg, fmt.Errorf("boot: pool subnet: %w", err)
	}
	if p.Start, err = netip.ParseAddr(b.Pool.Start); err != nil {
		return cfg, fmt.Errorf("boot: pool start: %w", err)
	}
	if p.End, err = netip.ParseAddr(b.Pool.End); err != nil {
		return cfg, fmt.Errorf("boot: pool end: %w", err)
	}
	if b.Pool.Router != "" {
		if p.Router, err = netip.ParseAddr(b.Pool.Router); err != nil {
			return cfg, fmt.Errorf("boot: pool router: %w", err)
		}
	}
	for _, d := range b.Pool.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return cfg, fmt.Errorf("boot: pool dns: %w", err)
		}
		p.DNS = append(p.DNS, a)
	}
	if b.Pool.LeaseTime != "" {
		if p.LeaseTime, err = time.ParseDuration(b.Pool.LeaseTime); err != nil {
			return cfg, fmt.Errorf("boot: pool lease_time: %w", err)
		}
	}
	return cfg, nil
}

// bootPredictor predicts the measurements of UEFI clients booting the
// served UKI (configured or built) through iPXE (policy "predicted"), or
// returns nil when no UKI is served.
func bootPredictor(b *BootConfig, stateDir string) attest.Predictor {
	if b == nil {
		return nil
	}
	c := *b
	c.defaults(stateDir)
	name, _ := c.efiUKI()
	if name == "" {
		return nil
	}
	return predict.NewCache(predict.Files{
		IPXE:    filepath.Join(c.IPXEDir, dhcp.DefaultEFIFile),
		UKI:     filepath.Join(c.ArtifactsDir, name),
		UKIName: name,
		Cmdline: c.Cmdline,
	})
}
