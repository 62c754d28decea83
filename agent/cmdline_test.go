package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestServersFromCmdline(t *testing.T) {
	many := make([]string, MaxServers+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.0.%d:4433", i+1)
	}
	tests := []struct {
		name    string
		cmdline string
		want    []string
		wantErr bool
	}{
		{"none", "console=ttyS0 panic=10", nil, false},
		{"single", "console=ttyS0 sealroot.server=10.0.0.1:4433", []string{"10.0.0.1:4433"}, false},
		{"list", "sealroot.server=10.0.0.1:4433,boot-2.lab:4433", []string{"10.0.0.1:4433", "boot-2.lab:4433"}, false},
		{"repeated", "sealroot.server=10.0.0.1:4433 quiet sealroot.server=[fd00::2]:4433", []string{"10.0.0.1:4433", "[fd00::2]:4433"}, false},
		{"duplicates_dropped", "sealroot.server=a:1,a:1 sealroot.server=a:1", []string{"a:1"}, false},
		{"other_key_ignored", "xsealroot.server=bad sealroot.servers=bad", nil, false},
		{"exactly_max", "sealroot.server=" + strings.Join(many[:MaxServers], ","), many[:MaxServers], false},
		{"over_max", "sealroot.server=" + strings.Join(many, ","), nil, true},
		{"empty", "sealroot.server=", nil, true},
		{"no_value", "sealroot.server", nil, true},
		{"empty_item", "sealroot.server=a:1,", nil, true},
		{"no_port", "sealroot.server=10.0.0.1", nil, true},
		{"port_zero", "sealroot.server=10.0.0.1:0", nil, true},
		{"port_too_big", "sealroot.server=10.0.0.1:65536", nil, true},
		{"empty_host", "sealroot.server=:4433", nil, true},
		{"bad_host", "sealroot.server=a_b!:4433", nil, true},
		{"control_char", "sealroot.server=a\x01:4433", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServersFromCmdline(tt.cmdline)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ServersFromCmdline(%q) = %q, %v; want an ErrInvalidConfig", tt.cmdline, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ServersFromCmdline(%q) = %q, %v; want %q", tt.cmdline, got, err, tt.want)
			}
		})
	}
}

func TestApplyCmdline(t *testing.T) {
	c := Config{Servers: []string{"10.0.0.1:4433"}}
	if err := c.ApplyCmdline("console=ttyS0"); err != nil || !slices.Equal(c.Servers, []string{"10.0.0.1:4433"}) {
		t.Fatalf("ApplyCmdline(no servers) = %v, servers %q; want the configured ones kept", err, c.Servers)
	}
	if err := c.ApplyCmdline("sealroot.server=10.0.0.2:4433,10.0.0.3:4433"); err != nil ||
		!slices.Equal(c.Servers, []string{"10.0.0.2:4433", "10.0.0.3:4433"}) {
		t.Fatalf("ApplyCmdline(two servers) = %v, servers %q; want the command line's", err, c.Servers)
	}
	if err := c.ApplyCmdline("sealroot.server=nope"); !errors.Is(err, ErrInvalidConfig) ||
		!slices.Equal(c.Servers, []string{"10.0.0.2:4433", "10.0.0.3:4433"}) {
		t.Fatalf("ApplyCmdline(bad) = %v, servers %q; want ErrInvalidConfig and no change", err, c.Servers)
	}
}

// FuzzServersFromCmdline: no panic; what is accepted is bounded, free of
// duplicates, passes the configuration's own check, and parses back to
// itself.
func FuzzServersFromCmdline(f *testing.F) {
	for _, s := range []string{
		"console=ttyS0 sealroot.server=10.0.0.1:4433",
		"sealroot.server=10.0.0.1:4433,boot-2.lab:4433 sealroot.server=[fd00::2]:4433",
		"sealroot.server=a:1,a:1,",
		"sealroot.server=[::1%eth0]:1 sealroot.server=x:65535",
		"sealroot.server==:: sealroot.server=,,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		got, err := ServersFromCmdline(cmdline)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if len(got) > MaxServers {
			t.Fatalf("%d servers, limit %d", len(got), MaxServers)
		}
		for i, s := range got {
			if err := checkHostPort(s); err != nil {
				t.Fatalf("accepted %q: %v", s, err)
			}
			if slices.Contains(got[:i], s) {
				t.Fatalf("duplicate %q in %q", s, got)
			}
		}
		if len(got) == 0 {
			return
		}
		again, err := ServersFromCmdline(CmdlineServerKey + "=" + strings.Join(got, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("round trip of %q = %q, %v", got, again, err)
		}
	})
}
