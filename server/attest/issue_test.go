package attest_test

import (
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/test/testenv"
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

// A second server with its own certificate and its own age identity
// releases a machine's secrets only once a member joined it to the
// keyring: before, it cannot decrypt them and refuses the release.
func TestSecondServerReleasesSecretsAfterJoin(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")
	if err := e.mgr.SetSecret(ctx, m.id, "chap", []byte("s3cret-for-b")); err != nil {
		t.Fatalf("SetSecret on A: %v", err)
	}

	out := filepath.Join(t.TempDir(), "b")
	if _, err := pki.Issue(e.dir, out, pki.IssueOptions{DNSNames: []string{"sealroot.test"}}); err != nil {
		t.Fatal(err)
	}
	cert, err := pki.LoadServer(out)
	if err != nil {
		t.Fatal(err)
	}
	boxB, err := secrets.LoadOrCreate(filepath.Join(out, "secrets.age.key"))
	if err != nil {
		t.Fatal(err)
	}
	mgrB := machines.New(machines.Config{Store: e.db, Box: boxB, Audit: e.audit, Logger: testenv.Logger(t, "b", hclog.Debug)})
	addr, _ := e.peerWith(t, "b", cert, func(c *attest.Config) { c.Secrets = mgrB })
	c := e.client(t, m.dev, func(c *agentattest.Config) { c.Servers = []string{addr} })

	if res, err := attestOnce(t, c); err == nil {
		t.Fatalf("B released before joining: secrets %d", len(res.Payload.Secrets))
	}
	if a := e.lastAudit(t, m.id); a.Outcome != "refused" {
		t.Fatalf("B's attempt = %+v, want refused", a)
	}
	if raw, _ := readFile(e.auditPath); !strings.Contains(string(raw), "identity did not match any of the recipients") {
		t.Fatalf("audit log does not say B failed to decrypt (identity did not match):\n%s", raw)
	}
	boxA, err := secrets.LoadOrCreate(filepath.Join(e.dir, "secrets.age.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.New(e.db, boxA, nil).Join(ctx, boxB.Recipient()); err != nil {
		t.Fatalf("join B on A: %v", err)
	}
	res, err := attestOnce(t, c)
	if err != nil {
		t.Fatalf("attest through B after join: %v", err)
	}
	if got := string(res.Payload.Secrets["chap"]); got != "s3cret-for-b" {
		t.Errorf("secret released by B = %q, want the value set on A", got)
	}
}
