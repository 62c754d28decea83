package agent

import (
	"fmt"
	"slices"
	"strings"
)

// CmdlineServerKey is the kernel command line parameter that lists the
// attestation servers: "sealroot.server=a:4433,b:4433", or the parameter
// repeated. The server writes it (boot.attest_servers) into the command
// line of its iPXE scripts and of the UKI it builds.
const CmdlineServerKey = "sealroot.server"

// MaxServers bounds the attestation servers an agent accepts, from its
// configuration and its kernel command line together.
const MaxServers = 16

// ServersFromCmdline returns the attestation servers the kernel command
// line lists with CmdlineServerKey, in order and without duplicates, or
// nil if it lists none. Each must be a host:port with a port in 1-65535;
// more than MaxServers is an error. All errors wrap ErrInvalidConfig.
func ServersFromCmdline(cmdline string) ([]string, error) {
	var servers []string
	for _, arg := range strings.Fields(cmdline) {
		key, value, ok := strings.Cut(arg, "=")
		if key != CmdlineServerKey {
			continue
		}
		if !ok || value == "" {
			return nil, fmt.Errorf("kernel command line: %s: empty: %w", CmdlineServerKey, ErrInvalidConfig)
		}
		for _, s := range strings.Split(value, ",") {
			if err := checkHostPort(s); err != nil {
				return nil, fmt.Errorf("kernel command line: %s: %q: %v: %w", CmdlineServerKey, s, err, ErrInvalidConfig)
			}
			if slices.Contains(servers, s) {
				continue
			}
			if len(servers) == MaxServers {
				return nil, fmt.Errorf("kernel command line: %s: more than %d servers: %w", CmdlineServerKey, MaxServers, ErrInvalidConfig)
			}
			servers = append(servers, s)
		}
	}
	return servers, nil
}

// ApplyCmdline takes the attestation servers from the kernel command
// line, when it lists any: they replace Servers, since they are what the
// booting server advertises now, while the configuration was baked into
// the initramfs when it was built. Every server must still present a
// certificate from the pinned CA, so the command line (unmeasured on BIOS
// machines) can at worst point the agent at servers that fail.
func (c *Config) ApplyCmdline(cmdline string) error {
	servers, err := ServersFromCmdline(cmdline)
	if err != nil {
		return err
	}
	if len(servers) > 0 {
		c.Servers = servers
	}
	return nil
}
