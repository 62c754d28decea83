package config

import (
	"fmt"
	"net"
	"net/netip"
)

// CheckMetricsAddr refuses a metrics address the tunnel could reach: one
// inside the tunnel prefix, or, with a tunnel, one without an explicit
// host (a wildcard listener answers on the tunnel interface too).
func (cfg *Config) CheckMetricsAddr() error {
	if cfg.MetricsAddr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics_addr %q: %w", cfg.MetricsAddr, err)
	}
	if cfg.Tunnel == nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return fmt.Errorf("metrics_addr %q: with a tunnel, name the IP address to listen on (a wildcard or host name could answer on the tunnel)", cfg.MetricsAddr)
	}
	prefix, err := netip.ParsePrefix(cfg.Tunnel.Prefix)
	if err == nil && prefix.Contains(ip.Unmap()) {
		return fmt.Errorf("metrics_addr %q is on the tunnel (%s): metrics are never served to machines", cfg.MetricsAddr, prefix)
	}
	return nil
}
