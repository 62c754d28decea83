package pki

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRenew(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := Init(dir, InitOptions{DNSNames: []string{"sealroot.lan"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Now: func() time.Time { return start }}); err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	keyBefore, _ := os.ReadFile(filepath.Join(dir, ServerKeyFile))
	later := start.Add(ServerValidity - 10*24*time.Hour)

	cert, err := Renew(dir, RenewOptions{Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.NotAfter; !got.Equal(later.Add(ServerValidity)) {
		t.Errorf("renewed NotAfter = %v, want %v", got, later.Add(ServerValidity))
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "sealroot.lan" || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("renewed SANs = %v %v, want the old ones", cert.DNSNames, cert.IPAddresses)
	}
	// Agents pin the unchanged CA: the new certificate verifies with it.
	caAfter, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if !bytes.Equal(caPEM, caAfter) {
		t.Fatal("Renew changed the CA")
	}
	pool, _ := CAPool(caPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "sealroot.lan", CurrentTime: later.Add(ServerValidity - time.Hour),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("renewed certificate does not verify with the pinned CA: %v", err)
	}
	if keyAfter, _ := os.ReadFile(filepath.Join(dir, ServerKeyFile)); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("Renew changed the server key")
	}
	if _, err := LoadServer(dir); err != nil {
		t.Errorf("renewed pair does not load: %v", err)
	}

	cert, err = Renew(dir, RenewOptions{DNSNames: []string{"boot.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "boot.example" || len(cert.IPAddresses) != 0 {
		t.Errorf("renew with names: SANs = %v %v, want only boot.example", cert.DNSNames, cert.IPAddresses)
	}
}

func TestRenew_no_CA(t *testing.T) {
	if _, err := Renew(t.TempDir(), RenewOptions{}); err == nil {
		t.Error("Renew without a CA succeeded")
	}
}

func TestCheckValidity(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &x509.Certificate{NotBefore: start, NotAfter: start.Add(ServerValidity)}
	for name, tc := range map[string]struct {
		now  time.Time
		want Validity
	}{
		"valid":         {start.Add(time.Hour), Valid},
		"31_days_left":  {c.NotAfter.Add(-31 * 24 * time.Hour), Valid},
		"29_days_left":  {c.NotAfter.Add(-29 * 24 * time.Hour), ExpiresSoon},
		"expired":       {c.NotAfter, Expired},
		"not_yet_valid": {start.Add(-time.Minute), NotYetValid},
	} {
		t.Run(name, func(t *testing.T) {
			got, msg := CheckValidity(c, tc.now)
			if got != tc.want || (got == Valid) != (msg == "") {
				t.Errorf("CheckValidity at %v = %v %q, want %v", tc.now, got, msg, tc.want)
			}
		})
	}
}
