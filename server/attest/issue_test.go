package attest_test

import (
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
)

// A second server with a certificate from `sealroot pki issue` (its own
// key, the shared CA) attests a machine whose agent pins only the CA.
func TestAttestToServerWithIssuedCertificate(t *testing.T) {
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")

	out := filepath.Join(t.TempDir(), "pki")
	if _, err := pki.Issue(e.dir, out, pki.IssueOptions{DNSNames: []string{"sealroot.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatalf("pki.Issue: %v", err)
	}
	cert, err := pki.LoadServer(out)
	if err != nil {
		t.Fatalf("pki.LoadServer: %v", err)
	}
	first, _ := pki.LoadServer(e.dir)
	if string(first.Certificate[0]) == string(cert.Certificate[0]) {
		t.Fatal("the second server got the first server's certificate")
	}
	addr, _ := e.peerWith(t, "b", cert)
	c := e.client(t, m.dev, func(c *agentattest.Config) { c.Servers = []string{addr} })
	res, err := attestOnce(t, c)
	if err != nil {
		t.Fatalf("attest to the server with an issued certificate: %v", err)
	}
	if res.Payload.MachineID != m.id {
		t.Errorf("payload machine = %s, want %s", res.Payload.MachineID, m.id)
	}
}

// A certificate issued by another CA (another site's `pki issue`) is
// refused by the agent before it sends anything.
func TestIssuedCertificateFromAnotherCAIsRefused(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")

	out := filepath.Join(t.TempDir(), "pki")
	if _, err := pki.Issue(other.dir, out, pki.IssueOptions{DNSNames: []string{"sealroot.test"}}); err != nil {
		t.Fatalf("pki.Issue: %v", err)
	}
	cert, err := pki.LoadServer(out)
	if err != nil {
		t.Fatalf("pki.LoadServer: %v", err)
	}
	before, _ := e.db.Machine(t.Context(), m.id)
	addr, _ := e.peerWith(t, "rogue", cert)
	c := e.client(t, m.dev, func(c *agentattest.Config) { c.Servers = []string{addr} })
	_, err = attestOnce(t, c)
	var ua x509.UnknownAuthorityError
	if err == nil || !(errors.As(err, &ua) || strings.Contains(err.Error(), "certificate signed by unknown authority")) {
		t.Fatalf("attest to a server with another CA's issued certificate = %v, want an unknown-authority TLS error", err)
	}
	if after, _ := e.db.Machine(t.Context(), m.id); after.BootCount != before.BootCount {
		t.Errorf("boot count %d -> %d: the rogue server released a credential", before.BootCount, after.BootCount)
	}
}
