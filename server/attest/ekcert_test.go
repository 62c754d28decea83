package attest_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	agenttpm "github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/test/tpmtest"
	"github.com/sealroot/sealroot/wire"
)

// swtpmMachine is a swtpm with an EK certificate from its local CA, after
// a synthetic measured boot.
type swtpmMachine struct {
	inst *tpmtest.SWTPMInstance
	keys *agenttpm.Keys
	dev  *agentattest.TPMDevice
	id   string
}

func newSWTPMMachine(t *testing.T, spec fakeboot.Spec) *swtpmMachine {
	t.Helper()
	m := newSWTPMMachineWith(t, spec, tpmtest.SWTPMOptions{EKCert: true}, nil)
	if len(m.keys.EKCert) == 0 {
		t.Fatal("swtpm with EKCert: LoadKeys read no EK certificate")
	}
	return m
}

// newSWTPMMachineWith sets up a swtpm with opts, lets prepare change its
// NV (as another vendor's provisioning would) and loads the agent's keys.
func newSWTPMMachineWith(t *testing.T, spec fakeboot.Spec, opts tpmtest.SWTPMOptions, prepare func(*tpmtest.SWTPMInstance)) *swtpmMachine {
	t.Helper()
	inst := tpmtest.SWTPM(t, opts)
	if prepare != nil {
		prepare(inst)
	}
	boot, err := fakeboot.Build(spec)
	if err != nil {
		t.Fatalf("fakeboot.Build: %v", err)
	}
	if err := boot.Apply(tpmtest.ExtendDigest(inst.TPM)); err != nil {
		t.Fatalf("apply boot: %v", err)
	}
	tp := agenttpm.New(inst.TPM)
	keys, err := tp.LoadKeys(context.Background())
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	t.Cleanup(func() { keys.Close() })
	dev := &agentattest.TPMDevice{TPM: tp, Keys: keys, ReadEventLog: func() ([]byte, error) { return boot.Log, nil }}
	return &swtpmMachine{inst: inst, keys: keys, dev: dev, id: wire.MachineID(keys.EKPublic)}
}

// trustCA makes the server verify EK certificates against inst's local CA.
func trustCA(inst *tpmtest.SWTPMInstance) func(*attest.Config) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(inst.CACerts()[0])
	inter.AddCert(inst.CACerts()[1])
	return func(c *attest.Config) { c.EKRoots, c.EKIntermediates = roots, inter }
}

// certDevice presents another TPM's EK certificate with its own EK.
type certDevice struct {
	agentattest.Device
	cert []byte
}

func (d *certDevice) Identity(ctx context.Context) (*agentattest.Identity, error) {
	id, err := d.Device.Identity(ctx)
	if err != nil {
		return nil, err
	}
	c := *id
	c.EKCert = d.cert
	return &c, nil
}

func (e *testEnv) wantNotRecorded(t *testing.T, id string) {
	t.Helper()
	if _, err := e.db.Machine(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused machine was recorded (lookup err %v)", err)
	}
}

func (e *testEnv) wantAuditReason(t *testing.T, id, want string) {
	t.Helper()
	if a := e.lastAudit(t, id); !strings.Contains(a.Reason, want) {
		t.Errorf("audit reason %q does not say %q", a.Reason, want)
	}
}

// TestEKCertificate runs the EK certificate checks over QUIC against two
// swtpm instances (A and B), each with its own local CA.
func TestEKCertificate(t *testing.T) {
	a := newSWTPMMachine(t, defaultSpec)
	b := newSWTPMMachine(t, defaultSpec)

	t.Run("trusted_cert_unknown_machine_pending", func(t *testing.T) {
		e := newEnv(t, trustCA(a.inst))
		_, err := attestOnce(t, e.client(t, a.dev))
		var p *agentattest.PendingError
		if !errors.As(err, &p) || p.MachineID != a.id {
			t.Fatalf("attest = %v, want pending for %s", err, a.id)
		}
		rec, err := e.db.Machine(context.Background(), a.id)
		if err != nil {
			t.Fatalf("machine not recorded: %v", err)
		}
		if !bytes.Equal(rec.EKCert, a.keys.EKCert) {
			t.Errorf("recorded EK certificate (%d bytes) differs from the TPM's (%d bytes)", len(rec.EKCert), len(a.keys.EKCert))
		}
	})

	t.Run("cert_of_another_ca_refused", func(t *testing.T) {
		e := newEnv(t, trustCA(b.inst))
		_, err := attestOnce(t, e.client(t, a.dev))
		e.wantRefused(t, err, a.id, "ek-certificate")
		e.wantAuditReason(t, a.id, "EK certificate not trusted")
		e.wantNotRecorded(t, a.id)
	})

	t.Run("cert_of_another_tpm_refused", func(t *testing.T) {
		e := newEnv(t, trustCA(a.inst))
		_, err := attestOnce(t, e.client(t, &certDevice{Device: b.dev, cert: a.keys.EKCert}))
		e.wantRefused(t, err, b.id, "ek-certificate")
		e.wantAuditReason(t, b.id, "EK certificate is for another key")
		e.wantNotRecorded(t, b.id)
	})

	t.Run("required_cert_missing_refused", func(t *testing.T) {
		e := newEnv(t, trustCA(a.inst), func(c *attest.Config) { c.RequireEKCert = true })
		m := newMachine(t, defaultSpec) // the simulator has no EK certificate
		_, err := attestOnce(t, e.client(t, m.dev))
		e.wantRefused(t, err, m.id, "ek-certificate")
		e.wantAuditReason(t, m.id, "no EK certificate")
		e.wantNotRecorded(t, m.id)
	})

	// Last: unsealing extends PCR 15 of A for the rest of this "boot".
	t.Run("approved_credential_unsealed_by_swtpm", func(t *testing.T) {
		e := newEnv(t, trustCA(a.inst), func(c *attest.Config) { c.RequireEKCert = true })
		e.enrollAndApprove(t, &testMachine{dev: a.dev, id: a.id}, "node-ek")
		if err := e.mgr.SetSecret(context.Background(), a.id, "wg-key", []byte("swtpm-secret")); err != nil {
			t.Fatalf("SetSecret: %v", err)
		}
		res, err := attestOnce(t, e.client(t, a.dev))
		if err != nil {
			t.Fatalf("attest approved swtpm machine: %v", err)
		}
		if res.Payload.MachineName != "node-ek" || string(res.Payload.Secrets["wg-key"]) != "swtpm-secret" {
			t.Errorf("payload = %q with secret %q, want node-ek and the operator's secret",
				res.Payload.MachineName, res.Payload.Secrets["wg-key"])
		}
		pcrs, err := tpmtest.ReadPCRs(a.inst.TPM, []int{wire.ReleasePCR})
		if err != nil {
			t.Fatalf("ReadPCRs: %v", err)
		}
		if bytes.Equal(pcrs[0].Digest, make([]byte, 32)) {
			t.Error("PCR 15 is still zero after the credential was opened")
		}
		if _, err := a.dev.Unseal(context.Background(), res.Credential); err == nil {
			t.Error("swtpm unsealed the credential again after PCR 15 was extended")
		}
		_, err = attestOnce(t, e.client(t, a.dev))
		e.wantRefused(t, err, a.id, "event-log")
	})
}
