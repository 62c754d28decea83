package config

import (
	"slices"
	"testing"
)

// TestBootRestartFields: the artifacts, kernel, initrd, UKI and command
// line change live; a changed listener or DHCP field needs a restart.
func TestBootRestartFields(t *testing.T) {
	cur := BootConfig{ServerIP: "192.0.2.1", Kernel: "vmlinuz", Cmdline: "console=ttyS0"}
	live := cur
	live.Kernel, live.Initrd, live.UKI, live.Cmdline, live.ArtifactsDir = "vmlinuz-2", "i2", "u.efi", "quiet", "/a"
	if got := BootRestartFields(&cur, &live); len(got) != 0 {
		t.Errorf("live changes need a restart: %q", got)
	}
	next := cur
	next.HTTPPort, next.DHCPMode = 8081, "full"
	if got, want := BootRestartFields(&cur, &next), []string{"boot.http_port", "boot.dhcp_mode"}; !slices.Equal(got, want) {
		t.Errorf("BootRestartFields = %q, want %q", got, want)
	}
	if got, want := ChangedFields(Config{StateDir: "/a"}, Config{StateDir: "/b", MetricsAddr: "127.0.0.1:1"}), []string{"state_dir", "metrics_addr"}; !slices.Equal(got, want) {
		t.Errorf("ChangedFields = %q, want %q", got, want)
	}
}
