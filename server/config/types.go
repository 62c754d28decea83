package config

import (
	"github.com/sealroot/sealroot/server/audit"
)

// Config is the daemon's configuration, read from a JSON file and flags.
type Config struct {
	// LogLevel is the daemon's log level: trace, debug, info, warn or
	// error (--log-level overrides it; SIGHUP rereads it).
	// Default: "info".
	// Example: "debug".
	LogLevel string `json:"log_level,omitempty"`
	// StateDir holds keys, the database and the audit log (absolute
	// path; --state-dir overrides it).
	// Default: "/var/lib/sealroot".
	// Example: "/srv/sealroot".
	StateDir string `json:"state_dir"`
	// AttestAddr is the UDP address of the QUIC attestation service
	// (--attest-addr overrides it).
	// Default: ":4433".
	// Example: "192.168.1.10:4433".
	AttestAddr string `json:"attest_addr"`
	// AdminSocket is the admin API's Unix socket (root only; --socket
	// overrides it).
	// Default: "/run/sealroot/admin.sock".
	// Example: "/run/sealroot/admin.sock".
	AdminSocket string `json:"admin_socket"`
	// EKCABundle lists PEM files or directories of TPM vendor CAs, trusted
	// as roots, in addition to those `sealroot ek import` put in
	// <state_dir>/ek. With neither, EK certificates are not checked against
	// a manufacturer (only against the EK's key); approval of the EK
	// fingerprint is the only identity check.
	// Default: [] (none).
	// Example: ["/etc/sealroot/ek-ca"].
	EKCABundle []string `json:"ek_ca_bundle,omitempty"`
	// RequireEKCert refuses TPMs without an EK certificate (in NV, in the
	// cache <state_dir>/ek/certs, or from a configured vendor service).
	// Default: false.
	// Example: true.
	RequireEKCert bool `json:"require_ek_cert,omitempty"`
	// EKCertIntelURL is the base URL of Intel's EK certificate service
	// (ekcert.IntelServiceURL, or a mirror), asked for the certificate of
	// a TPM that has none in NV. Empty: not asked, nothing leaves the
	// site; `sealroot ek import` fills the cache instead.
	// Default: "" (not asked).
	// Example: "https://ekop.intel.com/ekcertservice/".
	EKCertIntelURL string `json:"ek_cert_intel_url,omitempty"`
	// EKCertAMDURL is the base URL of AMD's EK certificate service
	// (ekcert.AMDServiceURL, or a mirror), as ek_cert_intel_url.
	// Default: "" (not asked).
	// Example: "https://ftpm.amd.com/pki/aia/".
	EKCertAMDURL string `json:"ek_cert_amd_url,omitempty"`
	// RequireSecureBoot refuses machines whose quoted event log does not
	// show UEFI Secure Boot on (PCR 7 SecureBoot = 1); legacy BIOS machines
	// are refused too.
	// Default: false.
	// Example: true.
	RequireSecureBoot bool `json:"require_secure_boot,omitempty"`
	// Boot configures the network boot services (ProxyDHCP or DHCP, TFTP,
	// HTTP); absent: none run.
	Boot *BootConfig `json:"boot,omitempty"`
	// Tunnel configures the per-machine WireGuard root link; absent: no
	// tunnel.
	Tunnel *TunnelConfig `json:"tunnel,omitempty"`
	// Store selects the state store: bbolt in state_dir, or etcd shared
	// by several servers; absent: bbolt. To move a single server's bbolt
	// state into etcd, stop the server and run `sealroot migrate-store`
	// (it reads this section; --dry-run first), then set backend "etcd"
	// on every server.
	Store *StoreConfig `json:"store,omitempty"`
	// RootTransport is "wireguard" (agents must send a WireGuard key) or
	// "plain" (trusted labs: roots over the plain LAN). It matters only
	// with a tunnel section.
	// Default: "wireguard".
	// Example: "plain".
	RootTransport string `json:"root_transport,omitempty"`
	// Images places the image store; absent: under state_dir.
	Images *ImagesConfig `json:"images,omitempty"`
	// Volumes places the machines' copy-on-write volumes; absent: under
	// state_dir.
	Volumes *VolumesConfig `json:"volumes,omitempty"`
	// ISCSI serves machines their iSCSI roots; absent: no iSCSI.
	ISCSI *ISCSIConfig `json:"iscsi,omitempty"`
	// NFS serves machines their NFSv4 and volatile roots through a
	// supervised nfs-ganesha; absent: none.
	NFS *NFSConfig `json:"nfs,omitempty"`
	// LowSpaceWarnBytes makes the server warn in its log while the state
	// directory's filesystem has less free space than this many bytes
	// (the audit log fails closed on a full disk: nothing is released);
	// negative: no warning.
	// Default: 268435456 (256 MiB, DefaultLowSpace).
	// Example: 1073741824.
	LowSpaceWarnBytes int64 `json:"low_space_warn_bytes,omitempty"`
	// MetricsAddr is the TCP address of the Prometheus metrics and
	// health endpoints (/metrics, /healthz, /readyz), e.g.
	// "127.0.0.1:9477"; empty: not served. Never the admin socket, never
	// on the tunnel: with Tunnel set it must name an IP address outside
	// the tunnel prefix.
	// Default: "" (not served).
	// Example: "127.0.0.1:9477".
	MetricsAddr string `json:"metrics_addr,omitempty"`
	// Limits bound what unauthenticated clients of the attestation and
	// boot services can hold (see LimitsConfig); nil: the defaults.
	Limits *LimitsConfig `json:"limits,omitempty"`
	// Audit sets the rotation of the audit log (<state_dir>/audit.log);
	// absent: the defaults below.
	Audit *AuditConfig `json:"audit,omitempty"`
	// Users chooses who checks the logins of per-user roots; absent:
	// sealroot's own user list.
	Users *UsersConfig `json:"users,omitempty"`
}

// UsersConfig is the "users" section: the password check of per-user
// root logins. Rate limits per user and per machine and the audit apply
// to either backend.
//
//	{"users": {"backend": "pam", "pam_service": "sealroot"}}
type UsersConfig struct {
	// Backend is "sealroot" (the users of `sealroot user add`, argon2id
	// hashes in the state database) or "pam" (the site's PAM stack:
	// LDAP, Kerberos, local accounts; needs a cgo build with libpam).
	// Default: "sealroot".
	// Example: "pam".
	Backend string `json:"backend,omitempty"`
	// PAMService is the PAM service (/etc/pam.d/NAME) the "pam" backend
	// authenticates with (auth and account).
	// Default: "sealroot".
	// Example: "login".
	PAMService string `json:"pam_service,omitempty"`
}

// Users backends.
const (
	UsersSealroot = "sealroot"
	UsersPAM      = "pam"
)

// PAM returns the PAM service of a "pam" users section, or "" for
// sealroot's own users.
func (u *UsersConfig) PAM() string {
	if u == nil || u.Backend != UsersPAM {
		return ""
	}
	if u.PAMService == "" {
		return "sealroot"
	}
	return u.PAMService
}

// AuditConfig is the "audit" section: size-based rotation of the audit
// log. No record is lost across a rotation.
type AuditConfig struct {
	// MaxSizeMB rotates audit.log to audit.log.1 (older files shift to .2
	// and on) when a record would take it past this many MiB.
	// Default: 100.
	// Example: 20.
	MaxSizeMB int `json:"max_size_mb,omitempty"`
	// Keep is how many rotated files are kept; older ones are deleted.
	// Default: 10.
	// Example: 50.
	Keep int `json:"keep,omitempty"`
}

// Rotation is the audit log's rotation for a (possibly nil) section.
func (a *AuditConfig) Rotation() audit.Rotation {
	r := audit.Rotation{MaxBytes: 100 << 20, Keep: 10}
	if a != nil && a.MaxSizeMB > 0 {
		r.MaxBytes = int64(a.MaxSizeMB) << 20
	}
	if a != nil && a.Keep > 0 {
		r.Keep = a.Keep
	}
	return r
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/sealroot"
	}
	if c.AttestAddr == "" {
		c.AttestAddr = ":4433"
	}
	if c.AdminSocket == "" {
		c.AdminSocket = "/run/sealroot/admin.sock"
	}
	if c.LowSpaceWarnBytes == 0 {
		c.LowSpaceWarnBytes = DefaultLowSpace
	}
}

// DefaultLowSpace is the free space on the state directory's filesystem
// below which the server warns (Config.LowSpaceWarnBytes).
const DefaultLowSpace = 256 << 20
