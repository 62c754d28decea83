package agent

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// DefaultConfigPath is where the initramfs builder puts the agent's
// configuration.
const DefaultConfigPath = "/etc/sealroot/agent.json"

// maxConfigSize bounds the configuration file (a CA bundle and a few names).
const maxConfigSize = 1 << 20

// ErrInvalidConfig is wrapped by every validation error of LoadConfig and
// Config.Validate.
var ErrInvalidConfig = errors.New("invalid agent configuration")

// Config is the agent's configuration, baked into the initramfs. It holds
// no secrets: the initramfs is the same for every machine.
type Config struct {
	// Servers are the host:port addresses of the QUIC attestation
	// service: equal servers sharing one state, tried in a shuffled order,
	// at most MaxServers. A "sealroot.server=" kernel command line
	// parameter replaces them (ApplyCmdline). Required.
	Servers []string `json:"servers"`
	// ServerName is the TLS name the server's certificate must carry.
	// Required.
	ServerName string `json:"server_name"`
	// CAPEM is the pinned sealroot CA, PEM. Required.
	CAPEM string `json:"ca_pem"`
	// Modules are kernel modules (or aliases) that must load; the NIC
	// driver is found from the PCI bus and need not be listed.
	Modules []string `json:"modules,omitempty"`
	// Interface is the network interface to configure; default: the first
	// link with carrier.
	Interface string `json:"interface,omitempty"`
}

// LoadConfig reads and validates the JSON configuration at path. Unknown
// fields are errors, so that a misspelt option is not silently ignored.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, maxConfigSize, ErrInvalidConfig)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", path, err, ErrInvalidConfig)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the JSON object: %w", path, ErrInvalidConfig)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Validate checks every field and returns all problems joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrInvalidConfig)...))
	}
	if len(c.Servers) == 0 {
		bad("servers: at least one host:port is required")
	}
	if len(c.Servers) > MaxServers {
		bad("servers: %d listed, at most %d", len(c.Servers), MaxServers)
	}
	for _, s := range c.Servers {
		if err := checkHostPort(s); err != nil {
			bad("servers: %q: %v", s, err)
		}
	}
	if c.ServerName == "" {
		bad("server_name: required (the TLS name of the attestation service)")
	}
	if _, err := c.CertPool(); err != nil {
		bad("ca_pem: %v", err)
	}
	for _, m := range c.Modules {
		if m == "" || strings.ContainsAny(m, "/ \t\n") {
			bad("modules: %q is not a module name", m)
		}
	}
	if i := c.Interface; i != "" && (len(i) > 15 || strings.ContainsAny(i, "/ \t\n:")) {
		bad("interface: %q is not an interface name", i)
	}
	return errors.Join(errs...)
}

// CertPool returns the pinned CA as a certificate pool.
func (c *Config) CertPool() (*x509.CertPool, error) {
	var certs []*x509.Certificate
	rest := []byte(c.CAPEM)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// isHostname reports whether s is a DNS host name: dot-separated labels of
// letters, digits and inner hyphens, at most 253 bytes.
func isHostname(s string) bool {
	if len(s) > 253 {
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
