package config_test

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/config"
)

func TestAttestServers(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string // "" = valid
	}{
		{"unset", `{"boot": {"server_ip": "10.77.0.1"}}`, ""},
		{"two", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["10.77.0.1:4433", "boot-2.lab:4433"]}}`, ""},
		{"ipv6", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["[fd00::1]:4433"]}}`, ""},
		{"no_port", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["10.77.0.1"]}}`, `boot.attest_servers: "10.77.0.1" is not host:port`},
		{"port_zero", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["10.77.0.1:0"]}}`, `boot.attest_servers: "10.77.0.1:0": bad port`},
		{"bad_host", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["a_b:1"]}}`, `is neither an IP address nor a host name`},
		{"twice", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["a:1", "a:1"]}}`, `"a:1" listed twice`},
		{"too_many", `{"boot": {"server_ip": "10.77.0.1", "attest_servers": ["a:1","a:2","a:3","a:4","a:5","a:6","a:7","a:8","a:9","a:10","a:11","a:12","a:13","a:14","a:15","a:16","a:17"]}}`,
			"boot.attest_servers: 17 servers, at most 16"},
		{"also_in_cmdline", `{"boot": {"server_ip": "10.77.0.1", "cmdline": "console=ttyS0 sealroot.server=a:1", "attest_servers": ["b:1"]}}`,
			"boot.cmdline: lists sealroot.server=: set boot.attest_servers instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseConfig([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseConfig = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseConfig = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	b := config.BootConfig{Cmdline: "console=ttyS0"}
	if got := b.KernelCmdline(); got != "console=ttyS0" {
		t.Errorf("KernelCmdline() without attest_servers = %q, want the cmdline alone", got)
	}
	b.AttestServers = []string{"10.77.0.1:4433", "10.77.0.2:4433"}
	if got, want := b.KernelCmdline(), "console=ttyS0 sealroot.server=10.77.0.1:4433,10.77.0.2:4433"; got != want {
		t.Errorf("KernelCmdline() = %q, want %q", got, want)
	}
}
