package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestIssueFromSharedCA(t *testing.T) {
	caDir := t.TempDir()
	if err := Init(caDir, InitOptions{DNSNames: []string{"a.sealroot.lan"}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b")
	cert, err := Issue(caDir, out, IssueOptions{DNSNames: []string{"b.sealroot.lan"}, IPs: []net.IP{net.ParseIP("10.0.0.2")}})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	ca, err := LoadCA(filepath.Join(caDir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "b.sealroot.lan",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("issued certificate does not verify against the CA: %v", err)
	}
	if _, err := LoadServer(out); err != nil {
		t.Errorf("LoadServer(out) = %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, CAKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the CA key was copied to the new server's directory (stat: %v)", err)
	}
	if fi, err := os.Stat(filepath.Join(out, ServerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v %v, want mode 0600", fi, err)
	}
	a, _ := LoadServer(caDir)
	if a.Leaf != nil && a.Leaf.Equal(cert) {
		t.Error("the new server got the first server's certificate")
	}

	_, err = Issue(caDir, out, IssueOptions{DNSNames: []string{"b.sealroot.lan"}})
	if !errors.Is(err, ErrExists) {
		t.Errorf("second Issue into the same directory = %v, want ErrExists", err)
	}
	_, err = Issue(caDir, caDir, IssueOptions{DNSNames: []string{"c.sealroot.lan"}})
	if err == nil {
		t.Error("Issue into the CA's own directory succeeded")
	}
}

func TestIssueFromRequestKeepsKeyOnServer(t *testing.T) {
	caDir := t.TempDir()
	if err := Init(caDir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	csrPath, err := Request(target)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if _, err := Request(target); !errors.Is(err, ErrExists) {
		t.Errorf("second Request = %v, want ErrExists (the key is kept)", err)
	}
	req, err := LoadRequest(csrPath)
	if err != nil {
		t.Fatalf("LoadRequest: %v", err)
	}
	if _, err := Issue(caDir, target, IssueOptions{DNSNames: []string{"b"}, Request: req}); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if _, err := LoadServer(target); err != nil {
		t.Errorf("the issued certificate does not match the key made on the server: %v", err)
	}
}

func TestIssueRefusesBadNames(t *testing.T) {
	caDir := t.TempDir()
	if err := Init(caDir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dns  []string
		ips  []net.IP
	}{
		{"no_names", nil, nil},
		{"wildcard", []string{"*.sealroot.lan"}, nil},
		{"empty_label", []string{"a..lan"}, nil},
		{"trailing_dot", []string{"a.lan."}, nil},
		{"space", []string{"a lan"}, nil},
		{"leading_hyphen", []string{"-a.lan"}, nil},
		{"long_label", []string{string(make([]byte, 64))}, nil},
		{"unspecified_ip", nil, []net.IP{net.IPv4zero}},
		{"multicast_ip", nil, []net.IP{net.ParseIP("ff02::1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			_, err := Issue(caDir, out, IssueOptions{DNSNames: tc.dns, IPs: tc.ips})
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("Issue(%q, %v) = %v, want ErrBadName", tc.dns, tc.ips, err)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused Issue left %s", out)
			}
		})
	}
}
