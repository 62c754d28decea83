package predict

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/secureboot"
)

// testCert returns a certificate named cn, self-signed or issued by
// parent (with parentKey).
func testCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: parent == nil, BasicConstraintsValid: true}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func esl(t *testing.T, certs ...*x509.Certificate) []byte {
	t.Helper()
	var b []byte
	for _, c := range certs {
		l, err := secureboot.SignatureList(c.Raw)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, l...)
	}
	return b
}

func TestPredictPCR7(t *testing.T) {
	ca, caKey := testCert(t, "site CA", nil, nil)
	leaf, _ := testCert(t, "image signer", ca, caKey)
	owner, _ := testCert(t, "sealroot owner", nil, nil)
	stranger, _ := testCert(t, "not enrolled", nil, nil)
	pk := esl(t, ca)
	vars := SecureBootVars{PK: pk, KEK: pk, DB: esl(t, ca, owner)}

	p, err := PredictPCR7(vars, []*x509.Certificate{owner, leaf, owner, ca})
	if err != nil {
		t.Fatal(err)
	}
	// The SecureBoot=1 event has the digest real PC firmware logs.
	if got := hex.EncodeToString(p.Events[0].Digest); got != "ccfc4bb32888a345bc8aeadaba552b627d99348c767681ab3141f5b01e40a40e" {
		t.Errorf("SecureBoot event digest %s", got)
	}
	ownerEntry := vars.DB[len(vars.DB)-16-len(owner.Raw):]
	caEntry := vars.DB[28 : 28+16+len(ca.Raw)]
	want := []Event{
		{"SecureBoot", sum(VariableData(efiGlobalVariableGUID, "SecureBoot", []byte{1}))},
		{"PK", sum(VariableData(efiGlobalVariableGUID, "PK", pk))},
		{"KEK", sum(VariableData(efiGlobalVariableGUID, "KEK", pk))},
		{"db", sum(VariableData(imageSecurityDatabaseGUID, "db", vars.DB))},
		{"dbx", sum(VariableData(imageSecurityDatabaseGUID, "dbx", nil))},
		{"separator", sum([]byte{0, 0, 0, 0})},
		// One authority per distinct db entry, in load order: the owner
		// (itself in db), then the CA that issued the leaf signer.
		{"db authority CN=sealroot owner", sum(VariableData(imageSecurityDatabaseGUID, "db", ownerEntry))},
		{"db authority CN=site CA", sum(VariableData(imageSecurityDatabaseGUID, "db", caEntry))},
	}
	if len(p.Events) != len(want) {
		t.Fatalf("got %d events %v, want %d", len(p.Events), p.Events, len(want))
	}
	for i := range want {
		if p.Events[i].Name != want[i].Name || !bytes.Equal(p.Events[i].Digest, want[i].Digest) {
			t.Errorf("event %d = %s %x, want %s %x", i, p.Events[i].Name, p.Events[i].Digest, want[i].Name, want[i].Digest)
		}
	}
	if !bytes.Equal(p.PCR7, Replay(want)) {
		t.Errorf("PCR7 %x, want the replay of the events", p.PCR7)
	}

	if _, err := PredictPCR7(vars, []*x509.Certificate{stranger}); !errors.Is(err, ErrNotInDB) {
		t.Errorf("signer not in db: err %v, want ErrNotInDB", err)
	}
}

func TestPredictPCR7_bad_lists(t *testing.T) {
	ca, _ := testCert(t, "site CA", nil, nil)
	good := esl(t, ca)
	tests := []struct {
		name string
		vars SecureBootVars
	}{
		{"db_truncated_header", SecureBootVars{DB: good[:20]}},
		{"db_list_size_beyond_data", SecureBootVars{DB: good[:len(good)-1]}},
		{"kek_signature_size_too_small", SecureBootVars{DB: good, KEK: func() []byte { b := bytes.Clone(good); b[24] = 3; b[25], b[26], b[27] = 0, 0, 0; return b }()}},
		{"dbx_body_not_multiple", SecureBootVars{DB: good, DBX: func() []byte { b := bytes.Clone(good); b[24]++; return b }()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PredictPCR7(tt.vars, nil); err == nil {
				t.Fatal("PredictPCR7 accepted a malformed signature list")
			}
		})
	}
}

func FuzzSignatureData(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := signatureData(b)
		if err != nil {
			return
		}
		for _, e := range entries {
			if len(e.data) < 16 {
				t.Fatalf("entry of %d bytes", len(e.data))
			}
		}
	})
}

func TestPredict_secure_boot(t *testing.T) {
	a := testArtifacts(t, "initramfs")
	ca, _ := testCert(t, "owner", nil, nil)
	a.SecureBoot = &SecureBootVars{PK: esl(t, ca), KEK: esl(t, ca), DB: esl(t, ca)}
	a.Signers = []*x509.Certificate{ca}
	p, err := Predict(a)
	if err != nil {
		t.Fatal(err)
	}
	if p.SecureBoot == nil || len(p.SecureBoot.Events) != PCR7Variables+2 {
		t.Fatalf("SecureBoot = %+v, want 5 variables, the separator and one authority", p.SecureBoot)
	}
	if len(p.BootApps) != 2 || p.BootApps[1].Name != "uki.efi" {
		t.Errorf("BootApps = %v, want iPXE and the UKI only", p.BootApps)
	}
	if !bytes.Equal(p.PCR12, make([]byte, 32)) || p.Cmdline.Name != NoCmdline {
		t.Errorf("PCR12 = %x (%q), want zero: nothing measured", p.PCR12, p.Cmdline.Name)
	}
	a.SecureBoot.DB = esl(t, func() *x509.Certificate { c, _ := testCert(t, "other", nil, nil); return c }())
	a.Signers = []*x509.Certificate{ca}
	if _, err := Predict(a); !errors.Is(err, ErrNotInDB) {
		t.Errorf("owner not in db: %v, want ErrNotInDB", err)
	}
}
