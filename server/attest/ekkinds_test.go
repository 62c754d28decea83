package attest_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/ektemplate"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/ekcert"
	"github.com/sealroot/sealroot/test/tpmtest"
)

// undefine removes NV indices from a swtpm before the agent looks, as on
// TPMs that ship without those certificates.
func undefine(t *testing.T, indices ...uint32) func(*tpmtest.SWTPMInstance) {
	return func(inst *tpmtest.SWTPMInstance) {
		for _, i := range indices {
			if err := tpmtest.UndefineNV(inst.TPM, i); err != nil {
				t.Fatalf("UndefineNV(%#x): %v", i, err)
			}
		}
	}
}

// trustRootOnly verifies EK certificates against inst's root CA alone: the
// intermediate must come from the TPM's NV chain.
func trustRootOnly(inst *tpmtest.SWTPMInstance) func(*attest.Config) {
	roots := x509.NewCertPool()
	roots.AddCert(inst.CACerts()[0])
	return func(c *attest.Config) { c.EKRoots = roots }
}

// wantPending attests once and checks the machine was recorded pending
// with an EK certificate status starting with status.
func (e *testEnv) wantPending(t *testing.T, m *swtpmMachine, status string) {
	t.Helper()
	_, err := attestOnce(t, e.client(t, m.dev))
	var p *agentattest.PendingError
	if !errors.As(err, &p) || p.MachineID != m.id {
		t.Fatalf("attest = %v, want pending for %s", err, m.id)
	}
	rec, err := e.db.Machine(context.Background(), m.id)
	if err != nil {
		t.Fatalf("machine not recorded: %v", err)
	}
	if !strings.HasPrefix(rec.EKCertStatus, status) {
		t.Errorf("EK certificate status = %q, want it to start with %q", rec.EKCertStatus, status)
	}
}

// TestEKCertKinds: TPMs whose EK certificates are not (only) RSA-2048 in the
// low range, as real vendors ship them, over QUIC against swtpm.
func TestEKCertKinds(t *testing.T) {
	t.Run("ecc_p384_only_verified", func(t *testing.T) {
		m := newSWTPMMachineWith(t, defaultSpec, tpmtest.SWTPMOptions{EKCert: true}, undefine(t, ektemplate.RSA2048.CertIndex))
		if m.keys.EKKind.Name != "p384" || len(m.keys.EKCert) == 0 {
			t.Fatalf("agent EK = %q with %d-byte certificate, want p384 with the swtpm's certificate", m.keys.EKKind.Name, len(m.keys.EKCert))
		}
		e := newEnv(t, trustCA(m.inst), func(c *attest.Config) { c.RequireEKCert = true })
		e.wantPending(t, m, "verified (from TPM NV")
	})

	t.Run("rsa3072_verified", func(t *testing.T) {
		inst := newSWTPMMachineWith(t, defaultSpec, tpmtest.SWTPMOptions{EKCert: true, RSAKeySize: 3072}, undefine(t, ektemplate.ECCP384.CertIndex))
		if inst.keys.EKKind.Name != "rsa3072" {
			t.Fatalf("agent EK = %q, want rsa3072", inst.keys.EKKind.Name)
		}
		e := newEnv(t, trustCA(inst.inst), func(c *attest.Config) { c.RequireEKCert = true })
		e.wantPending(t, inst, "verified (from TPM NV")
	})

	t.Run("intermediate_from_nv_chain_verified", func(t *testing.T) {
		m := newSWTPMMachineWith(t, defaultSpec, tpmtest.SWTPMOptions{EKCert: true}, func(inst *tpmtest.SWTPMInstance) {
			if err := tpmtest.WriteNV(inst.TPM, ektemplate.ChainFirst, inst.CACerts()[1].Raw); err != nil {
				t.Fatalf("WriteNV(chain): %v", err)
			}
		})
		if len(m.keys.EKChain) != 1 {
			t.Fatalf("agent read %d chain entries, want 1", len(m.keys.EKChain))
		}
		e := newEnv(t, trustRootOnly(m.inst))
		e.wantPending(t, m, "verified")
	})

	t.Run("intermediate_missing_refused", func(t *testing.T) {
		m := newSWTPMMachine(t, defaultSpec)
		e := newEnv(t, trustRootOnly(m.inst))
		_, err := attestOnce(t, e.client(t, m.dev))
		e.wantRefused(t, err, m.id, "ek-certificate")
		e.wantAuditReason(t, m.id, "EK certificate not trusted")
		e.wantNotRecorded(t, m.id)
	})
}

// TestEKCertFromVendorService: a TPM without any certificate in NV (Intel
// PTT before 11th-gen, AMD fTPM). The server fetches the certificate from
// a local server speaking Intel's scheme, verifies and caches it; offline,
// an imported certificate does the same; without either the machine is
// enrolled as not verified, or refused when a certificate is required.
func TestEKCertFromVendorService(t *testing.T) {
	var cert []byte
	m := newSWTPMMachineWith(t, defaultSpec, tpmtest.SWTPMOptions{EKCert: true}, func(inst *tpmtest.SWTPMInstance) {
		var err error
		if cert, err = tpmtest.ReadNV(inst.TPM, ektemplate.RSA2048.CertIndex); err != nil {
			t.Fatalf("ReadNV: %v", err)
		}
		undefine(t, ektemplate.RSA2048.CertIndex, ektemplate.ECCP384.CertIndex)(inst)
	})
	if m.keys.EKKind.Name != "rsa2048" || m.keys.EKCert != nil {
		t.Fatalf("agent EK = %q with %d-byte certificate, want rsa2048 without", m.keys.EKKind.Name, len(m.keys.EKCert))
	}
	parsed, err := pki.ParseEKCert(cert)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ekcert.IntelID(parsed.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.EscapedPath() != "/ekcertservice/"+id {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"pubhash": id, "certificate": base64.URLEncoding.EncodeToString(parsed.Raw)})
	}))
	t.Cleanup(vendor.Close)
	withSource := func(cfg ekcert.Config) (func(*attest.Config), *ekcert.Source) {
		cfg.Dir = t.TempDir()
		src, err := ekcert.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return func(c *attest.Config) { c.EKCerts = src }, src
	}

	t.Run("fetched_verified_cached", func(t *testing.T) {
		mod, _ := withSource(ekcert.Config{IntelURL: vendor.URL + "/ekcertservice/", Client: vendor.Client()})
		e := newEnv(t, trustCA(m.inst), mod, func(c *attest.Config) { c.RequireEKCert = true })
		e.wantPending(t, m, "verified (from intel")
		before := requests.Load()
		e.wantPending(t, m, "verified (from cache")
		if requests.Load() != before {
			t.Errorf("second attestation made %d vendor requests, want the cache", requests.Load()-before)
		}
	})

	t.Run("imported_offline_verified", func(t *testing.T) {
		mod, src := withSource(ekcert.Config{})
		if err := src.Put(parsed); err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, trustCA(m.inst), mod, func(c *attest.Config) { c.RequireEKCert = true })
		e.wantPending(t, m, "verified (from cache")
	})

	t.Run("none_not_verified", func(t *testing.T) {
		mod, _ := withSource(ekcert.Config{})
		e := newEnv(t, trustCA(m.inst), mod)
		e.wantPending(t, m, "not verified: no EK certificate")
	})

	t.Run("none_required_refused", func(t *testing.T) {
		mod, _ := withSource(ekcert.Config{AMDURL: vendor.URL + "/pki/aia/", Client: vendor.Client()})
		e := newEnv(t, trustCA(m.inst), mod, func(c *attest.Config) { c.RequireEKCert = true })
		_, err := attestOnce(t, e.client(t, m.dev))
		e.wantRefused(t, err, m.id, "ek-certificate")
		e.wantNotRecorded(t, m.id)
	})
}

// TestUnparsableEKCert: a certificate Go cannot parse leaves the machine
// "not verified" when nothing depends on it, and is refused when the
// server has manufacturer roots.
func TestUnparsableEKCert(t *testing.T) {
	m := newMachine(t, defaultSpec)
	dev := &certDevice{Device: m.dev, cert: []byte("\x30\x03\x02\x01")}
	t.Run("no_roots_not_verified", func(t *testing.T) {
		e := newEnv(t)
		_, err := attestOnce(t, e.client(t, dev))
		var p *agentattest.PendingError
		if !errors.As(err, &p) {
			t.Fatalf("attest = %v, want pending", err)
		}
		rec, err := e.db.Machine(context.Background(), m.id)
		if err != nil || !strings.HasPrefix(rec.EKCertStatus, "not verified: parse EK certificate") {
			t.Errorf("record = %v (%v), want status not verified: parse EK certificate", rec, err)
		}
	})
	t.Run("with_roots_refused", func(t *testing.T) {
		sw := newSWTPMMachine(t, defaultSpec)
		e := newEnv(t, trustCA(sw.inst))
		_, err := attestOnce(t, e.client(t, dev))
		e.wantRefused(t, err, m.id, "ek-certificate")
	})
}
