package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInitFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	opts := InitOptions{DNSNames: []string{"sealroot.example"}, IPs: []net.IP{net.IPv4(192, 0, 2, 1)}, Now: func() time.Time { return now }}
	if err := Init(dir, opts); err != nil {
		t.Fatalf("Init: %v", err)
	}
	wantModes := map[string]os.FileMode{
		".": 0o700, CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600,
	}
	for name, want := range wantModes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", name, got, want)
		}
	}
	ca, err := LoadCA(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !ca.NotAfter.Equal(now.Add(CAValidity)) {
		t.Errorf("CA NotAfter = %v, want %v", ca.NotAfter, now.Add(CAValidity))
	}
	srv, err := LoadServer(dir)
	if err != nil {
		t.Fatalf("LoadServer: %v", err)
	}
	leaf, err := x509.ParseCertificate(srv.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("server EKU = %v, want serverAuth only", leaf.ExtKeyUsage)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "sealroot.example" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(192, 0, 2, 1)) {
		t.Errorf("server SANs = %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !leaf.NotAfter.Equal(now.Add(ServerValidity)) {
		t.Errorf("server NotAfter = %v, want %v", leaf.NotAfter, now.Add(ServerValidity))
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("server certificate not signed by the CA: %v", err)
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if err := Init(dir, InitOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init = %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, CACertFile)); string(after) != string(before) {
		t.Fatal("refused Init changed ca.crt")
	}
	if err := Init(dir, InitOptions{NewCA: true}); err != nil {
		t.Fatalf("Init(Force) = %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, CACertFile)); string(after) == string(before) {
		t.Error("Init(Force) kept the old CA")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadServer(dir); err == nil {
		t.Error("LoadServer(empty dir) succeeded")
	}
	if _, err := CAPool([]byte("nothing")); err == nil {
		t.Error("CAPool(no PEM) succeeded")
	}
	if err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(filepath.Join(dir, ServerCertFile)); err == nil {
		t.Error("LoadCA(server certificate) succeeded")
	}
}

// TestTLSPinning runs a real handshake on 127.0.0.1.
func TestTLSPinning(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if err := Init(d, InitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := LoadServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					io.WriteString(c, "ok")
				}
			}()
		}
	}()
	tests := []struct {
		name    string
		caDir   string
		wantErr bool
	}{
		{"pinned_ca", dir, false},
		{"other_ca", other, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pemBytes, err := os.ReadFile(filepath.Join(tt.caDir, CACertFile))
			if err != nil {
				t.Fatal(err)
			}
			pool, err := CAPool(pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}}
			c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
			if tt.wantErr {
				var unknown x509.UnknownAuthorityError
				if !errors.As(err, &unknown) {
					t.Errorf("dial = %v, want x509.UnknownAuthorityError", err)
				}
				if err == nil {
					c.Close()
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
				t.Errorf("read = %q, %v", b, err)
			}
		})
	}
}
