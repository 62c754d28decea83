package config

import (
	"path/filepath"
	"strings"

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
	// AttestServers are the host:port addresses of the attestation
	// servers that agents try, in a shuffled order, when several sealroot
	// servers share one state: this server and its peers, all with
	// certificates from the one CA the initramfs pins. The server appends
	// them to the kernel command line it serves and builds into the UKI
	// ("sealroot.server=a,b"), where they replace the servers of the
	// initramfs's agent.json. At most 16, each an IP address or host name
	// with a port.
	// Default: [] (nothing appended: agents use agent.json, i.e. this server).
	// Example: ["10.77.0.1:4433", "10.77.0.2:4433"].
	AttestServers []string `json:"attest_servers,omitempty"`
	// HTTPBoot names the artifact (in artifacts_dir) that UEFI firmware
	// HTTP boot clients load directly, without TFTP or iPXE: a signed UKI
	// with its command line built in (or an iPXE EFI binary copied there).
	// Empty: HTTP boot clients are not answered.
	// Default: "" (not answered).
	// Example: "signed-uki.efi".
	HTTPBoot string `json:"http_boot,omitempty"`
	// SecureBootVars is a directory holding the Secure Boot variables of
	// the machines' firmware (PK.esl, KEK.esl, db.esl and optionally
	// dbx.esl: each variable's data, as `efi-readvar -v db -o db.esl`
	// writes it). When set, policy "predicted" also predicts PCR 7 from
	// them and the owner certificate (<state_dir>/secureboot/owner.crt)
	// that signs the served images: machines with Secure Boot on need no
	// approval of PCR 7, and a firmware whose keys differ needs
	// re-approval with a diff. Set it only when Secure Boot is on.
	// Default: "" (PCR 7 stays pinned at approval).
	// Example: "/etc/sealroot/secureboot-vars".
	SecureBootVars string `json:"secure_boot_vars,omitempty"`
	// DownloadRateKiB caps every artifact download, HTTP (kernel,
	// initramfs, UKI) and TFTP (iPXE), at this many KiB per second per
	// connection. Leave it off unless machines hang or stall while iPXE
	// downloads at line rate: some firmware and NIC pairs (UNDI drivers,
	// some Realtek and Intel onboard NICs) drop packets faster than they
	// recover. A cap of a few MiB/s per connection is then enough; a
	// storm of N machines still uses up to N times the cap.
	// Default: 0 (no cap).
	// Example: 4096.
	DownloadRateKiB int64 `json:"download_rate_kib,omitempty"`
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

// CmdlineServerKey is the kernel command line parameter that lists the
// attestation servers (package agent reads it).
const CmdlineServerKey = "sealroot.server"

// MaxAttestServers bounds AttestServers (the agent accepts no more).
const MaxAttestServers = 16

// KernelCmdline returns the kernel command line the server serves: Cmdline
// followed by AttestServers, when set, as "sealroot.server=a,b".
func (b *BootConfig) KernelCmdline() string {
	if len(b.AttestServers) == 0 {
		return b.Cmdline
	}
	return strings.TrimSpace(b.Cmdline + " " + CmdlineServerKey + "=" + strings.Join(b.AttestServers, ","))
}

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

func (b *BootConfig) Defaults(stateDir string) {
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

// EFIUKI returns the name of the UKI UEFI clients boot ("" when they boot
// Kernel and Initrd) and whether the server builds it. b has its defaults.
func (b *BootConfig) EFIUKI() (name string, build bool) {
	switch {
	case b.EFIBoot != EFIBootUKI:
		return "", false
	case b.UKI != "":
		return b.UKI, false
	}
	return DefaultUKI, true
}
