package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/config"
)

func TestParseConfig_valid(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":   `{}`,
		"minimal": `{"boot": {"server_ip": "192.168.1.10", "dhcp_interface": "eno1"}, "tunnel": {"prefix": "10.200.0.0/16", "endpoint": "192.168.1.10:51820"}, "iscsi": {}}`,
		"full_dhcp": `{"log_level": "DEBUG", "attest_addr": "10.77.0.1:4433", "boot": {"server_ip": "10.77.0.1", "dhcp_interface": "br0", "dhcp_mode": "full",
			"pool": {"subnet": "10.77.0.0/24", "start": "10.77.0.100", "end": "10.77.0.200", "router": "10.77.0.1", "dns": ["10.77.0.1"], "lease_time": "30m"}}}`,
		"nulls":       `{"boot": null, "ek_ca_bundle": null}`,
		"store_bbolt": `{"store": {"backend": "bbolt"}}`,
		"store_etcd": `{"store": {"backend": "etcd", "endpoints": ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
			"cert_file": "/etc/sealroot/etcd.pem", "key_file": "/etc/sealroot/etcd-key.pem", "ca_file": "/etc/sealroot/etcd-ca.pem", "prefix": "/sealroot/a/"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := config.ParseConfig([]byte(doc)); err != nil {
				t.Errorf("ParseConfig = %v, want nil", err)
			}
		})
	}
}

// TestParseConfig_every_mistake checks that one run reports every mistake
// of a file, each with its field's path.
func TestParseConfig_every_mistake(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  string
		want []string // one line each, in any order
	}{
		"unknown_fields": {`{"stat_dir": "/x", "boot": {"server_ip": "10.0.0.1", "htp_port": 80}, "tunnel": {"prefix": "10.200.0.0/16", "endpoint": "10.0.0.1:51820", "mtu": 1400}}`,
			[]string{"stat_dir: unknown field", "boot.htp_port: unknown field", "tunnel.mtu: unknown field"}},
		"types": {`{"require_ek_cert": "yes", "boot": {"server_ip": "10.0.0.1", "http_port": 70000, "tftp_port": -1}, "ek_ca_bundle": ["a", 3]}`,
			[]string{`require_ek_cert: want true or false, got "yes"`, "boot.http_port: 70000 is not an integer that fits (16 bits, not negative)",
				"boot.tftp_port: -1 is not an integer that fits (16 bits, not negative)", "ek_ca_bundle[1]: want a string, got 3"}},
		"values": {`{"log_level": "verbose", "state_dir": "relative", "attest_addr": "4433", "root_transport": "tls",
			"boot": {"dhcp_mode": "half", "cmdline": "console=ttyS0 ${secret}", "kernel": "../../etc/shadow",
				"pool": {"subnet": "10.77.0.0", "start": "x", "end": "10.77.0.9", "lease_time": "1 hour"}},
			"tunnel": {"prefix": "10.200.0.0/16", "endpoint": ":51820", "interface": "a-very-long-interface-name"}}`,
			[]string{
				`log_level: "verbose": want one of "trace", "debug", "info", "warn", "error"`,
				`state_dir: "relative" is not an absolute path`,
				`attest_addr: "4433" is not ip:port`,
				`root_transport: "tls": want one of "wireguard", "plain"`,
				"boot.server_ip: required",
				`boot.dhcp_mode: "half": want one of "proxy", "full"`,
				"boot.cmdline: ",
				`boot.kernel: "../../etc/shadow" is not a file name inside artifacts_dir`,
				`boot.pool.subnet: "10.77.0.0" is not an address prefix`,
				`boot.pool.start: "x" is not an IP address`,
				`boot.pool.lease_time: "1 hour" is not a positive Go duration`,
				`tunnel.endpoint: ":51820": needs a specific IP address`,
				`tunnel.interface: "a-very-long-interface-name" is not a network interface name`,
			}},
		"store_etcd": {`{"store": {"backend": "etcd", "endpoints": ["10.0.0.1:2379"], "cert_file": "/c.pem", "prefix": "sealroot"}}`,
			[]string{`store.endpoints[0]: "10.0.0.1:2379": want an http:// or https:// URL`, "store.key_file: cert_file and key_file go together",
				`store.prefix: "sealroot": want a path starting and ending with /`}},
		"store_backend":       {`{"store": {"backend": "sql"}}`, []string{`store.backend: "sql": want one of "bbolt", "etcd"`}},
		"store_bbolt_no_etcd": {`{"store": {"endpoints": ["http://x:2379"]}}`, []string{`store: endpoints, TLS files, prefix and server_name need backend "etcd"`}},
		"store_server_name":   {`{"store": {"backend": "etcd", "endpoints": ["http://x:2379"], "server_name": "a/b"}}`, []string{`store.server_name: "a/b": want at most 63 characters, no slash or space`}},
		"images_peer_listen": {`{"images": {"peer_listen": "0.0.0.0:9478"}}`,
			[]string{`images.peer_listen: "0.0.0.0:9478": "0.0.0.0" is not a specific IP address`}},
		"images_peer_listen_needs_etcd": {`{"images": {"peer_listen": "10.0.0.1:9478"}}`,
			[]string{`images.peer_listen: needs store backend "etcd" (servers sharing a store)`}},
		"store_etcd_needs_endpoints": {`{"store": {"backend": "etcd"}}`, []string{"store.endpoints: required for backend etcd"}},
		"full_dhcp_needs_pool": {`{"boot": {"server_ip": "10.0.0.1", "dhcp_mode": "full"}}`,
			[]string{"boot.pool: required with dhcp_mode full", "boot.dhcp_interface: required with dhcp_mode full"}},
		"users": {`{"users": {"backend": "ldap", "pam_service": "../x"}}`,
			[]string{`users.backend: "ldap": want "sealroot" or "pam"`, `users.pam_service: "../x": a PAM service name, with backend "pam"`}},
		"nfs_needs_tun": {`{"nfs": {}, "tunnel": {"prefix": "10.200.0.0/16", "endpoint": "10.0.0.1:51820", "netstack": true}}`,
			[]string{"nfs: NFS roots need the tunnel on a kernel TUN interface"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.ParseConfig([]byte(tc.doc))
			if err == nil {
				t.Fatal("ParseConfig = nil, want errors")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is no *config.FieldError", err)
			}
		})
	}
}

func TestParseConfig_not_one_object(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"second_object": {`{"log_level": "info"} {"log_level": "debug"}`, "trailing data after the JSON object"},
		"trailing_junk": {"{}\nx", "trailing data"},
		"not_json":      {`{"log_level": }`, "not JSON"},
		"array":         {`[]`, "(top level): want an object, got a list"},
		"empty":         {``, "not JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.ParseConfig([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig(%q) = %v, want %q", tc.doc, err, tc.want)
			}
		})
	}
}

func TestLoadConfig_names_file(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sealroot.json")
	if err := os.WriteFile(p, []byte(`{"log_level": "loud"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.LoadConfig(p)
	if err == nil || !strings.HasPrefix(err.Error(), "config "+p+":\nlog_level: ") {
		t.Errorf("LoadConfig = %v", err)
	}
}
