// Package config is sealroot's daemon configuration: the JSON file's
// types with their defaults, and its strict loading and validation. The
// types' doc comments are the reference page docs/configuration.md
// (package configdoc renders it: go generate ./server/config).
package config

//go:generate go run ../configdoc/gen -o ../../docs/configuration.md

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/ipxe"
	"github.com/sealroot/sealroot/server/attest"
)

// FieldError is a configuration mistake at a JSON path ("boot.server_ip").
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// LoadConfig reads a JSON configuration file strictly: exactly one JSON
// object, no unknown fields, every value of its field's type, and every
// value valid (Config.Validate). The error lists every mistake found, one
// *FieldError per line, joined with errors.Join.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return cfg, nil
}

// ParseConfig is LoadConfig on the file's bytes.
func ParseConfig(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON object at byte %d (one object per file)", dec.InputOffset())
	}
	var errs []error
	checkShape(raw, reflect.TypeFor[Config](), "", &errs)
	if _, isObject := raw.(map[string]any); !isObject {
		return nil, errors.Join(errs...)
	}
	// Decode what fits, then check the values too, so one run reports
	// every mistake; a field of the wrong type is reported once.
	var cfg Config
	strictErr := json.Unmarshal(b, &cfg)
	if verr := cfg.Validate(); verr != nil {
		for _, e := range verr.(interface{ Unwrap() []error }).Unwrap() {
			if fe, ok := e.(*FieldError); !ok || !hasPath(errs, fe.Path) {
				errs = append(errs, e)
			}
		}
	}
	if len(errs) == 0 && strictErr != nil {
		errs = append(errs, strictErr) // checkShape missed it; still refuse
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// hasPath reports whether errs holds a FieldError at path or below it.
func hasPath(errs []error, path string) bool {
	for _, e := range errs {
		if fe, ok := e.(*FieldError); ok && (fe.Path == path || strings.HasPrefix(fe.Path, path+".") || strings.HasPrefix(fe.Path, path+"[")) {
			return true
		}
	}
	return false
}

// checkShape compares a decoded JSON value with the Go type it must fill
// and records every unknown field and mismatched type with its path.
func checkShape(v any, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(format string, args ...any) {
		p := path
		if p == "" {
			p = "(top level)"
		}
		*errs = append(*errs, &FieldError{p, fmt.Errorf(format, args...)})
	}
	if v == nil {
		return // null leaves the field unset
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %s", jsonKind(v))
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if sf.IsExported() && name != "-" && name != "" {
				fields[name] = sf.Type
			}
		}
		for _, k := range sortedKeys(obj) {
			ft, ok := fields[k]
			if !ok {
				*errs = append(*errs, &FieldError{join(path, k), errors.New("unknown field")})
				continue
			}
			checkShape(obj[k], ft, join(path, k), errs)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			bad("want a list, got %s", jsonKind(v))
			return
		}
		for i, e := range arr {
			checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad("want a string, got %s", jsonKind(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad("want true or false, got %s", jsonKind(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			bad("want a number, got %s", jsonKind(v))
			return
		}
		var err error
		if k := t.Kind(); k >= reflect.Uint && k <= reflect.Uint64 {
			_, err = strconv.ParseUint(string(n), 10, t.Bits())
		} else {
			_, err = strconv.ParseInt(string(n), 10, t.Bits())
		}
		if err != nil {
			bad("%s is not an integer that fits (%d bits%s)", n, t.Bits(), map[bool]string{true: ", not negative"}[t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64])
		}
	}
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// validator collects FieldErrors.
type validator struct{ errs []error }

func (v *validator) check(path string, err error) {
	if err != nil {
		v.errs = append(v.errs, &FieldError{path, err})
	}
}

// Validate checks every value that can be checked without touching the
// system (addresses, durations, names, enumerations) and returns every
// mistake, one *FieldError each, joined. Unset fields take their defaults
// and are valid.
func (c *Config) Validate() error {
	var v validator
	v.check("log_level", checkLogLevel(c.LogLevel))
	v.check("state_dir", checkAbsPath(c.StateDir))
	v.check("attest_addr", checkListenAddr(c.AttestAddr, false))
	v.check("admin_socket", checkAbsPath(c.AdminSocket))
	for i, p := range c.EKCABundle {
		v.check(fmt.Sprintf("ek_ca_bundle[%d]", i), checkNonEmpty(p))
	}
	v.check("root_transport", checkOneOf(c.RootTransport, "", attest.TransportWireGuard, attest.TransportPlain))
	if c.Boot != nil {
		c.Boot.validate(&v)
	}
	if c.Tunnel != nil {
		c.Tunnel.validate(&v)
	}
	if c.Store != nil {
		c.Store.validate(&v)
	}
	if c.Images != nil {
		v.check("images.dir", checkAbsPath(c.Images.Dir))
		v.check("images.peer_listen", checkListenAddr(c.Images.PeerListen, true))
		if c.Images.PeerListen != "" && c.StoreBackend() != StoreEtcd {
			v.check("images.peer_listen", errors.New(`needs store backend "etcd" (servers sharing a store)`))
		}
	}
	if c.Volumes != nil {
		v.check("volumes.dir", checkAbsPath(c.Volumes.Dir))
	}
	if c.ISCSI != nil {
		if c.ISCSI.Listen != "" {
			v.check("iscsi.listen", checkListenAddr(c.ISCSI.Listen, true))
		}
		v.check("iscsi.port", checkPort(c.ISCSI.Port))
	}
	if c.Users != nil {
		switch c.Users.Backend {
		case "", UsersSealroot, UsersPAM:
		default:
			v.check("users.backend", fmt.Errorf("%q: want %q or %q", c.Users.Backend, UsersSealroot, UsersPAM))
		}
		if c.Users.PAMService != "" && (c.Users.Backend != UsersPAM || strings.ContainsAny(c.Users.PAMService, "/ \x00")) {
			v.check("users.pam_service", fmt.Errorf("%q: a PAM service name, with backend %q", c.Users.PAMService, UsersPAM))
		}
	}
	if c.Limits != nil {
		if _, err := c.Limits.Parse(); err != nil {
			v.check("limits", err)
		}
	}
	if c.Audit != nil {
		if c.Audit.MaxSizeMB < 0 {
			v.check("audit.max_size_mb", fmt.Errorf("%d is negative", c.Audit.MaxSizeMB))
		}
		if c.Audit.Keep < 0 {
			v.check("audit.keep", fmt.Errorf("%d is negative", c.Audit.Keep))
		}
	}
	if c.NFS != nil {
		v.check("nfs.dir", checkAbsPath(c.NFS.Dir))
		if c.Tunnel == nil {
			v.check("nfs", errors.New("NFS roots are served on the tunnel address: add a tunnel section"))
		} else if c.Tunnel.Netstack {
			v.check("nfs", errors.New("NFS roots need the tunnel on a kernel TUN interface: tunnel.netstack must be false"))
		}
	}
	return errors.Join(v.errs...)
}

func (b *BootConfig) validate(v *validator) {
	if b.ServerIP == "" {
		v.check("boot.server_ip", errors.New("required"))
	} else if ip, err := netip.ParseAddr(b.ServerIP); err != nil || !ip.Is4() || ip.IsUnspecified() {
		v.check("boot.server_ip", fmt.Errorf("%q is not a specific IPv4 address", b.ServerIP))
	}
	v.check("boot.dhcp_mode", checkOneOf(b.DHCPMode, "", "proxy", "full"))
	if b.DHCPMode == "full" && b.Pool == nil {
		v.check("boot.pool", errors.New("required with dhcp_mode full"))
	}
	if b.DHCPMode == "full" && b.DHCPInterface == "" {
		v.check("boot.dhcp_interface", errors.New("required with dhcp_mode full"))
	}
	v.check("boot.dhcp_interface", checkIfName(b.DHCPInterface))
	v.check("boot.artifacts_dir", checkAbsPath(b.ArtifactsDir))
	v.check("boot.ipxe_dir", checkAbsPath(b.IPXEDir))
	v.check("boot.kernel", checkArtifactName(b.Kernel))
	v.check("boot.initrd", checkArtifactName(b.Initrd))
	v.check("boot.uki", checkArtifactName(b.UKI))
	v.check("boot.cmdline", ipxe.CheckCmdline(b.Cmdline))
	v.check("boot.attest_servers", checkAttestServers(b.AttestServers))
	if len(b.AttestServers) > 0 {
		if strings.Contains(b.Cmdline, CmdlineServerKey+"=") {
			v.check("boot.cmdline", fmt.Errorf("lists %s=: set boot.attest_servers instead", CmdlineServerKey))
		}
		v.check("boot.attest_servers", ipxe.CheckCmdline(b.KernelCmdline()))
	}
	v.check("boot.secure_boot_vars", checkAbsPath(b.SecureBootVars))
	if b.DownloadRateKiB < 0 {
		v.check("boot.download_rate_kib", fmt.Errorf("%d is negative (0: no cap)", b.DownloadRateKiB))
	}
	if p := b.Pool; p != nil {
		v.check("boot.pool.subnet", checkPrefix(p.Subnet, true))
		v.check("boot.pool.start", checkIP(p.Start, true))
		v.check("boot.pool.end", checkIP(p.End, true))
		v.check("boot.pool.router", checkIP(p.Router, false))
		for i, d := range p.DNS {
			v.check(fmt.Sprintf("boot.pool.dns[%d]", i), checkIP(d, true))
		}
		v.check("boot.pool.lease_time", checkDuration(p.LeaseTime))
	}
}

func (t *TunnelConfig) validate(v *validator) {
	v.check("tunnel.prefix", checkPrefix(t.Prefix, true))
	v.check("tunnel.listen_port", checkPort(t.ListenPort))
	if t.Endpoint == "" {
		v.check("tunnel.endpoint", errors.New("required"))
	} else {
		v.check("tunnel.endpoint", checkListenAddr(t.Endpoint, true))
	}
	v.check("tunnel.interface", checkIfName(t.Interface))
}

// logLevels are the values of log_level and --log-level.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

func checkLogLevel(s string) error {
	return checkOneOf(strings.ToLower(s), append([]string{""}, logLevels...)...)
}

// HCLogLevel is the configured log level, info when unset.
func (c *Config) HCLogLevel() hclog.Level {
	if c.LogLevel == "" {
		return hclog.Info
	}
	return hclog.LevelFromString(c.LogLevel)
}

func checkOneOf(s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	var quoted []string
	for _, a := range allowed {
		if a != "" {
			quoted = append(quoted, strconv.Quote(a))
		}
	}
	return fmt.Errorf("%q: want one of %s", s, strings.Join(quoted, ", "))
}

func checkNonEmpty(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	return nil
}

func checkAbsPath(p string) error {
	if p != "" && !filepath.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	return nil
}

// checkListenAddr checks "ip:port" or ":port"; specific requires an IP.
func checkListenAddr(s string, specific bool) error {
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not ip:port: %w", s, err)
	}
	if host == "" && specific {
		return fmt.Errorf("%q: needs a specific IP address", s)
	}
	if host != "" {
		ip, err := netip.ParseAddr(host)
		if err != nil || specific && ip.IsUnspecified() {
			return fmt.Errorf("%q: %q is not a specific IP address", s, host)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 0 to 65535", s, port)
	}
	return nil
}

func checkPort(p int) error {
	if p < 0 || p > 65535 {
		return fmt.Errorf("%d is not a port (0 to 65535)", p)
	}
	return nil
}

func checkIP(s string, required bool) error {
	if s == "" && !required {
		return nil
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	return nil
}

func checkPrefix(s string, required bool) error {
	if s == "" && !required {
		return nil
	}
	if s == "" {
		return errors.New("required")
	}
	if _, err := netip.ParsePrefix(s); err != nil {
		return fmt.Errorf("%q is not an address prefix (e.g. 10.200.0.0/16)", s)
	}
	return nil
}

func checkDuration(s string) error {
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive Go duration (e.g. 1h, 90s)", s)
	}
	return nil
}

// checkIfName checks a Linux network interface name.
func checkIfName(s string) error {
	if len(s) > 15 || strings.ContainsAny(s, "/ \t\n:") || s == "." || s == ".." {
		return fmt.Errorf("%q is not a network interface name", s)
	}
	return nil
}

// checkArtifactName accepts a file name inside the artifacts directory.
func checkArtifactName(s string) error {
	if s == "" {
		return nil
	}
	if filepath.IsAbs(s) || s != filepath.Clean(s) || s == ".." || strings.HasPrefix(s, "../") {
		return fmt.Errorf("%q is not a file name inside artifacts_dir", s)
	}
	return nil
}

// checkAttestServers checks boot.attest_servers: at most
// MaxAttestServers distinct host:port, the host an IP address or a DNS
// name, the port 1-65535.
func checkAttestServers(servers []string) error {
	if len(servers) > MaxAttestServers {
		return fmt.Errorf("%d servers, at most %d", len(servers), MaxAttestServers)
	}
	var errs []error
	for i, s := range servers {
		if slices.Contains(servers[:i], s) {
			errs = append(errs, fmt.Errorf("%q listed twice", s))
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is not host:port: %w", s, err))
			continue
		}
		if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host) {
			errs = append(errs, fmt.Errorf("%q: %q is neither an IP address nor a host name", s, host))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("%q: bad port %q", s, port))
		}
	}
	return errors.Join(errs...)
}

// isDNSName reports whether s is a host name: dot-separated labels of
// letters, digits and inner hyphens, at most 253 bytes.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
