// Package boot wires the network boot services (ProxyDHCP or DHCP, TFTP,
// HTTP) from the configuration's boot section: it checks the section,
// binds the listeners, renders the iPXE scripts, builds the served UKI and
// predicts its measurements. The services themselves are its subpackages
// dhcp, tftp and http.
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/sealroot/sealroot/server/boot/udpbuf"
	"github.com/sealroot/sealroot/server/boot/ukibuild"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/secureboot"
	"github.com/sealroot/sealroot/server/servestats"
)

// UKIBuilder returns the builder of the served UKI, or nil when the
// server builds none. b has its defaults. When Secure Boot is initialized
// (an owner key in SecureBootDir(stateDir)) the UKI is signed with it.
func UKIBuilder(b *config.BootConfig, stateDir string) *ukibuild.Builder {
	name, build := b.EFIUKI()
	if !build {
		return nil
	}
	in := ukibuild.Inputs{
		Stub:    b.UKIStub,
		Kernel:  filepath.Join(b.ArtifactsDir, b.Kernel),
		Initrd:  filepath.Join(b.ArtifactsDir, b.Initrd),
		Cmdline: b.KernelCmdline(),
		Out:     filepath.Join(b.ArtifactsDir, name),
	}
	if dir := SecureBootDir(stateDir); secureboot.Initialized(dir) {
		in.Sign = func(src, dst string) error {
			// sbsign runs locally; a minute is plenty.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return secureboot.Sign(ctx, dir, src, dst)
		}
	}
	return ukibuild.New(in)
}

// Services are the boot services' sockets and settings, bound by Listen
// and served by Serve; Close releases them.
type Services struct {
	cfg     config.BootConfig // with defaults
	ip      netip.Addr
	scripts boothttp.ScriptFunc
	logger  hclog.Logger
	http    net.Listener
	tftp    net.PacketConn  // nil with DisableTFTP
	prober  *dhcp.ARPProber // nil unless full DHCP probes
	efiIPXE string          // the ipxe.efi served: signed copy or Debian's

	dhcpStats, tftpStats, httpStats servestats.Counter
}

// Served returns what each boot service served so far, by service
// ("dhcp", "tftp", "http").
func (s *Services) Served() map[string]servestats.Snapshot {
	return map[string]servestats.Snapshot{
		"dhcp": s.dhcpStats.Snapshot(), "tftp": s.tftpStats.Snapshot(), "http": s.httpStats.Snapshot(),
	}
}

// Listen checks the boot section b (stateDir fills its defaults) and
// binds the HTTP and TFTP listeners. Close releases them.
func Listen(b config.BootConfig, stateDir string, logger hclog.Logger) (_ *Services, err error) {
	s := &Services{cfg: b, logger: logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	c := &s.cfg
	c.Defaults(stateDir)
	if s.ip, err = netip.ParseAddr(c.ServerIP); err != nil {
		return nil, fmt.Errorf("boot: server_ip: %w", err)
	}
	if err := ipxe.CheckCmdline(c.KernelCmdline()); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	if c.EFIBoot != config.EFIBootUKI && c.EFIBoot != config.EFIBootKernel {
		return nil, fmt.Errorf("boot: efi_boot %q: want %s or %s", c.EFIBoot, config.EFIBootUKI, config.EFIBootKernel)
	}
	if c.EFIBoot == config.EFIBootKernel && c.UKI != "" {
		return nil, fmt.Errorf("boot: uki %q is set but efi_boot is %s", c.UKI, config.EFIBootKernel)
	}
	if c.EFIBoot == config.EFIBootKernel {
		logger.Warn("UEFI clients boot a kernel and initramfs that the TPM does not measure: the server refuses them under every policy but identity-only", "efi_boot", c.EFIBoot)
	}
	ukis := UKIBuilder(c, stateDir)
	if ukis != nil {
		if _, err := os.Stat(c.UKIStub); err != nil {
			return nil, fmt.Errorf("boot: UKI stub: %w (install systemd-boot-efi, set boot.uki_stub, or set boot.efi_boot to %s)", err, config.EFIBootKernel)
		}
		// Missing parts are not fatal: the UKI is built before the first
		// UEFI boot script once they are in place.
		if _, err := ukis.Refresh(); err != nil {
			logger.Warn("cannot build the UKI yet: UEFI boots fail until it builds", "uki", config.DefaultUKI, "error", err)
		} else {
			logger.Info("built the UKI UEFI clients boot", "uki", config.DefaultUKI, "kernel", c.Kernel, "initrd", c.Initrd)
		}
	}
	if s.efiIPXE, err = signIPXE(c, stateDir, logger); err != nil {
		return nil, err
	}
	s.scripts = Scripts(c, s.ip, ukis, logger)
	// Render once now so a bad configuration fails at start, not at boot.
	if _, err := s.scripts(context.Background(), boothttp.ScriptRequest{Arch: ipxe.ArchBIOS}); err != nil {
		return nil, fmt.Errorf("boot: iPXE script: %w", err)
	}
	if s.http, err = net.Listen("tcp", net.JoinHostPort(s.ip.String(), strconv.Itoa(int(c.HTTPPort)))); err != nil {
		return nil, fmt.Errorf("boot: http listener: %w", err)
	}
	if !c.DisableTFTP {
		if s.tftp, err = net.ListenPacket("udp4", net.JoinHostPort(s.ip.String(), strconv.Itoa(int(c.TFTPPort)))); err != nil {
			return nil, fmt.Errorf("boot: tftp listener: %w", err)
		}
		udpbuf.Grow(s.tftp)
	}
	return s, nil
}

// Config is the boot section with its defaults.
func (s *Services) Config() *config.BootConfig { return &s.cfg }

// IP is the boot server address (boot.server_ip).
func (s *Services) IP() netip.Addr { return s.ip }

// Scripts renders the iPXE scripts of the configuration Listen checked.
func (s *Services) Scripts() boothttp.ScriptFunc { return s.scripts }

// HTTPAddr is the boot HTTP listener's address.
func (s *Services) HTTPAddr() net.Addr { return s.http.Addr() }

// TFTPAddr is the TFTP listener's address, nil with TFTP disabled.
func (s *Services) TFTPAddr() net.Addr {
	if s.tftp == nil {
		return nil
	}
	return s.tftp.LocalAddr()
}

// Serve starts the boot services on the listeners with run (which owns
// and waits for them): HTTP with handler, TFTP, and DHCP when configured,
// full DHCP keeping its leases in leases. The services end with ctx.
func (s *Services) Serve(ctx context.Context, handler http.Handler, lim config.Limits, leases dhcp.LeaseStore, run func(string, func() error)) error {
	b := &s.cfg
	counted := servestats.Handler(&s.httpStats, handler)
	run("boot http", func() error { return boothttp.ServeWith(ctx, s.http, counted, s.logger, lim.HTTP) })
	if s.tftp != nil {
		ts := tftp.New(map[string]string{
			dhcp.DefaultBIOSFile: filepath.Join(b.IPXEDir, dhcp.DefaultBIOSFile),
			dhcp.DefaultEFIFile:  s.efiIPXE,
		}, s.logger)
		ts.TransfersPerSource = lim.TFTPPerSource
		ts.MaxTransferTime = lim.TFTPMaxTime
		ts.Stats = &s.tftpStats
		ts.RateCap = b.DownloadRateKiB << 10
		run("boot tftp", func() error { return ts.Serve(ctx, s.tftp) })
	}
	if b.DHCPInterface == "" {
		return nil
	}
	dcfg, err := dhcpConfig(b, s.ip)
	if err != nil {
		return err
	}
	dcfg.Stats = &s.dhcpStats
	if dcfg.Mode == dhcp.ModeFull {
		dcfg.Leases = leases
		if !b.NoProbe {
			if s.prober, err = dhcp.NewARPProber(b.DHCPInterface, 0); err != nil {
				return fmt.Errorf("boot: %w", err)
			}
			dcfg.Probe = s.prober.Probe
		}
	}
	ds, err := dhcp.New(dcfg, s.logger)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	run("boot dhcp", func() error { return ds.Serve(ctx) })
	return nil
}

// Close closes the listeners and the ARP prober; call it once the
// services Serve started have ended.
func (s *Services) Close() error {
	var errs []error
	if s.prober != nil {
		errs = append(errs, s.prober.Close())
	}
	if s.tftp != nil {
		errs = append(errs, closeOnce(s.tftp))
	}
	if s.http != nil {
		errs = append(errs, closeOnce(s.http))
	}
	return errors.Join(errs...)
}

// closeOnce closes a listener that Serve may have closed already when its
// context ended: that is a clean stop, not an error.
func closeOnce(c io.Closer) error {
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Scripts renders the iPXE script for a client arch. Its artifact URLs
// point below boothttp.ArtifactPrefix, where the HTTP handler serves
// b.ArtifactsDir.
// UEFI clients get the UKI when one is served; when the server builds it
// (ukis not nil), the UKI is rebuilt first if its parts changed.
func Scripts(b *config.BootConfig, ip netip.Addr, ukis *ukibuild.Builder, logger hclog.Logger) boothttp.ScriptFunc {
	base := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(b.HTTPPort))) +
		strings.TrimSuffix(boothttp.ArtifactPrefix, "/")
	ukiName, _ := b.EFIUKI()
	return func(ctx context.Context, r boothttp.ScriptRequest) ([]byte, error) {
		p := ipxe.Params{BaseURL: base, Arch: r.Arch, Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.KernelCmdline()}
		if r.Arch == ipxe.ArchEFIx64 && ukiName != "" {
			p = ipxe.Params{BaseURL: base, Arch: r.Arch, UKI: ukiName, Cmdline: b.KernelCmdline()}
		}
		if r.RetryPause > 0 {
			// The downloads are at their pace: pause as long as the
			// server booked for this machine (whole seconds, for iPXE's
			// sleep).
			p.RetrySeconds = int(min(r.RetryPause+time.Second-1, time.Hour) / time.Second)
		}
		if p.UKI != "" {
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

func dhcpConfig(b *config.BootConfig, ip netip.Addr) (dhcp.Config, error) {
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

// SecureBootDir is where `sealroot secureboot init` keeps the owner key.
func SecureBootDir(stateDir string) string { return filepath.Join(stateDir, "secureboot") }

// EFIIPXE returns the path of the ipxe.efi served to UEFI machines (b
// defaulted): when Secure Boot is initialized (an owner key in
// SecureBootDir), the copy signed with it that Listen keeps there, else
// Debian's in ipxe_dir; signed reports which.
func EFIIPXE(b *config.BootConfig, stateDir string) (path string, signed bool) {
	if dir := SecureBootDir(stateDir); secureboot.Initialized(dir) {
		return filepath.Join(dir, secureboot.SignedIPXE), true
	}
	return filepath.Join(b.IPXEDir, dhcp.DefaultEFIFile), false
}

// signIPXE returns the path of the ipxe.efi to serve (EFIIPXE), after
// signing Debian's into it when Secure Boot is initialized.
func signIPXE(c *config.BootConfig, stateDir string, logger hclog.Logger) (string, error) {
	path, signed := EFIIPXE(c, stateDir)
	if !signed {
		return path, nil
	}
	// sbsign runs locally; a minute is plenty.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := secureboot.SignCopy(ctx, SecureBootDir(stateDir), filepath.Join(c.IPXEDir, dhcp.DefaultEFIFile), path); err != nil {
		return "", fmt.Errorf("boot: sign iPXE with the Secure Boot owner key: %w", err)
	}
	logger.Info("serving iPXE signed with the Secure Boot owner key", "file", path)
	return path, nil
}

// Predictor predicts the measurements of UEFI clients booting the
// served UKI (configured or built) through iPXE (policy "predicted"), or
// returns nil when no UKI is served.
func Predictor(b *config.BootConfig, stateDir string) attest.Predictor {
	if b == nil {
		return nil
	}
	c := *b
	c.Defaults(stateDir)
	name, _ := c.EFIUKI()
	if name == "" {
		return nil
	}
	efiIPXE, _ := EFIIPXE(&c, stateDir)
	f := predict.Files{
		IPXE:    efiIPXE,
		UKI:     filepath.Join(c.ArtifactsDir, name),
		UKIName: name,
		Cmdline: c.KernelCmdline(),
	}
	if c.SecureBootVars != "" {
		f.SecureBootVars = c.SecureBootVars
		f.Signers = []string{filepath.Join(SecureBootDir(stateDir), secureboot.CertFile)}
	}
	return predict.NewCache(f)
}
