package softtpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

func newTPM(t testing.TB) *TPM {
	t.Helper()
	tpm, err := New(rand.Reader)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tpm
}

func TestPublicAreas(t *testing.T) {
	tpm := newTPM(t)
	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpm.EKPublic())
	if err != nil {
		t.Fatalf("unmarshal EK: %v", err)
	}
	// Same as tpm2.RSAEKTemplate but for the modulus.
	tmpl := tpm2.RSAEKTemplate
	tmpl.Unique = ek.Unique
	if !bytes.Equal(tpm2.Marshal(tmpl), tpm.EKPublic()) {
		t.Errorf("EK public area differs from tpm2.RSAEKTemplate beyond Unique")
	}
	if _, err := evidence.ParseEK(tpm.EKPublic()); err != nil {
		t.Errorf("evidence.ParseEK: %v", err)
	}
	if _, err := evidence.ParseAK(tpm.AKPublic()); err != nil {
		t.Errorf("evidence.ParseAK: %v", err)
	}
}

func TestActivateCredential(t *testing.T) {
	tpm, other := newTPM(t), newTPM(t)
	blob, encSecret, secret, err := evidence.NewActivation(rand.Reader, tpm.EKPublic(), tpm.AKPublic())
	if err != nil {
		t.Fatalf("evidence.NewActivation: %v", err)
	}
	got, err := tpm.ActivateCredential(blob, encSecret)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Errorf("ActivateCredential = %x, want %x", got, secret)
	}

	// Bound to another TPM's AK: the EK decrypts but the HMAC over the
	// name fails.
	otherAKBlob, otherAKEnc, _, err := evidence.NewActivation(rand.Reader, tpm.EKPublic(), other.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(blob)
	flipped[len(flipped)-1] ^= 1

	tests := []struct {
		name      string
		blob, enc []byte
		want      error
	}{
		{"tampered_blob", flipped, encSecret, ErrIntegrity},
		{"other_ek", blob, mustEncSecret(t, other), ErrBadCredential},
		{"short_blob", blob[:1], encSecret, ErrBadCredential},
		{"empty_secret", blob, nil, ErrBadCredential},
		{"other_ak_name", otherAKBlob, otherAKEnc, ErrIntegrity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tpm.ActivateCredential(tt.blob, tt.enc); !errors.Is(err, tt.want) {
				t.Errorf("ActivateCredential = %v, want %v", err, tt.want)
			}
		})
	}
}

// mustEncSecret returns an encrypted seed for tpm's EK.
func mustEncSecret(t *testing.T, tpm *TPM) []byte {
	t.Helper()
	_, enc, _, err := evidence.NewActivation(rand.Reader, tpm.EKPublic(), tpm.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestActivateCredentialGoTPM checks ActivateCredential against go-tpm's
// tpm2.CreateCredential directly, with credentials of several sizes.
func TestActivateCredentialGoTPM(t *testing.T) {
	tpm := newTPM(t)
	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpm.EKPublic())
	if err != nil {
		t.Fatal(err)
	}
	kem, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		t.Fatalf("tpm2.ImportEncapsulationKey: %v", err)
	}
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpm.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.ObjectName(ak)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 16, 20, 32} {
		t.Run(fmt.Sprintf("credential_%d_bytes", size), func(t *testing.T) {
			cred := bytes.Repeat([]byte{byte(size)}, size)
			blob, enc, err := tpm2.CreateCredential(rand.Reader, kem, name.Buffer, cred)
			if err != nil {
				t.Fatalf("tpm2.CreateCredential: %v", err)
			}
			got, err := tpm.ActivateCredential(blob, enc)
			if err != nil || !bytes.Equal(got, cred) {
				t.Errorf("ActivateCredential = %x, %v; want %x", got, err, cred)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tpm := newTPM(t)
	boot, err := fakeboot.Build(fakeboot.Spec{Kernel: []byte("k"), Initrd: []byte("i"), Cmdline: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.Apply(tpm); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	sel := []int{15, 0, 1, 2, 3, 4, 5, 6, 7, 9, 11}
	pcrs := tpm.PCRs(sel)
	for i, p := range pcrs {
		if want := boot.PCRs()[p.Index]; p.Index != sel[i] || !bytes.Equal(p.Digest, want) {
			t.Errorf("PCR %d = %x, want %x", p.Index, p.Digest, want)
		}
	}
	if _, err := eventlog.Verify(boot.Log, pcrs); err != nil {
		t.Errorf("eventlog.Verify of softtpm PCRs: %v", err)
	}

	nonce := bytes.Repeat([]byte{7}, 32)
	quote, sig, err := tpm.Quote(nonce, sel)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	verifyByHand(t, tpm, quote, sig, nonce, pcrs)
	info, err := evidence.VerifyQuote(tpm.AKPublic(), quote, sig, nonce, pcrs)
	if err != nil {
		t.Fatalf("evidence.VerifyQuote: %v", err)
	}
	if info.ResetCount != 0 {
		t.Errorf("ResetCount = %d, want 0", info.ResetCount)
	}

	tpm.Reboot()
	if p := tpm.PCRs([]int{4})[0]; !bytes.Equal(p.Digest, make([]byte, 32)) {
		t.Errorf("PCR 4 after Reboot = %x, want zero", p.Digest)
	}
	quote2, sig2, err := tpm.Quote(nonce, sel)
	if err != nil {
		t.Fatal(err)
	}
	info2, err := evidence.VerifyQuote(tpm.AKPublic(), quote2, sig2, nonce, tpm.PCRs(sel))
	if err != nil {
		t.Fatalf("evidence.VerifyQuote after Reboot: %v", err)
	}
	if info2.ResetCount != 1 || info2.Clock <= info.Clock {
		t.Errorf("after Reboot: ResetCount %d Clock %d, want 1 and > %d", info2.ResetCount, info2.Clock, info.Clock)
	}
	if _, err := evidence.VerifyQuote(tpm.AKPublic(), quote2, sig2, nonce, pcrs); !errors.Is(err, evidence.ErrPCRDigest) {
		t.Errorf("VerifyQuote with stale PCRs = %v, want ErrPCRDigest", err)
	}
	other := newTPM(t)
	if _, err := evidence.VerifyQuote(other.AKPublic(), quote, sig, nonce, pcrs); !errors.Is(err, evidence.ErrSignature) {
		t.Errorf("VerifyQuote with another AK = %v, want ErrSignature", err)
	}
}

// verifyByHand checks a quote without the evidence package.
func verifyByHand(t *testing.T, tpm *TPM, quote, sig, nonce []byte, pcrs []wire.PCR) {
	t.Helper()
	attest, err := tpm2.Unmarshal[tpm2.TPMSAttest](quote)
	if err != nil {
		t.Fatalf("unmarshal TPMS_ATTEST: %v", err)
	}
	if attest.Magic != tpm2.TPMGeneratedValue || attest.Type != tpm2.TPMSTAttestQuote || !bytes.Equal(attest.ExtraData.Buffer, nonce) {
		t.Errorf("attest magic %x type %x extra %x", attest.Magic, attest.Type, attest.ExtraData.Buffer)
	}
	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpm.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	name, _ := tpm2.ObjectName(akPub)
	if !bytes.Equal(attest.QualifiedSigner.Buffer, name.Buffer) {
		t.Errorf("QualifiedSigner %x, want AK name %x", attest.QualifiedSigner.Buffer, name.Buffer)
	}
	qi, err := attest.Attested.Quote()
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[int][]byte{}
	for _, p := range pcrs {
		byIndex[p.Index] = p.Digest
	}
	h := sha256.New()
	for i := range NumPCRs {
		if d, ok := byIndex[i]; ok {
			h.Write(d)
		}
	}
	if !bytes.Equal(qi.PCRDigest.Buffer, h.Sum(nil)) {
		t.Errorf("PCR digest mismatch")
	}
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	if err != nil {
		t.Fatal(err)
	}
	ecc, err := s.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.Pub(*akPub)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(quote)
	r, ss := new(big.Int).SetBytes(ecc.SignatureR.Buffer), new(big.Int).SetBytes(ecc.SignatureS.Buffer)
	if !ecdsa.Verify(pub.(*ecdsa.PublicKey), digest[:], r, ss) {
		t.Errorf("signature does not verify")
	}
}

func TestBadInputs(t *testing.T) {
	tpm := newTPM(t)
	tests := []struct {
		name string
		err  error
	}{
		{"extend_pcr_24", tpm.ExtendPCR(24, make([]byte, 32))},
		{"extend_negative", tpm.ExtendPCR(-1, make([]byte, 32))},
		{"extend_sha1_digest", tpm.ExtendPCR(4, make([]byte, 20))},
		{"quote_pcr_24", quoteErr(tpm, []int{24})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, ErrBadPCR) {
				t.Errorf("err = %v, want ErrBadPCR", tt.err)
			}
		})
	}
	if _, _, err := tpm.Quote(make([]byte, 65), []int{0}); err == nil {
		t.Errorf("Quote with 65 bytes of extra data succeeded")
	}
}

func quoteErr(tpm *TPM, pcrs []int) error {
	_, _, err := tpm.Quote(nil, pcrs)
	return err
}

func BenchmarkQuote(b *testing.B) {
	tpm := newTPM(b)
	sel := []int{0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 15}
	for b.Loop() {
		if _, _, err := tpm.Quote(make([]byte, 32), sel); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkActivateCredential(b *testing.B) {
	tpm := newTPM(b)
	blob, enc, _, err := evidence.NewActivation(rand.Reader, tpm.EKPublic(), tpm.AKPublic())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := tpm.ActivateCredential(blob, enc); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzActivateCredential checks ActivateCredential never panics on what a
// server sends.
func FuzzActivateCredential(f *testing.F) {
	tpm := newTPM(f)
	blob, enc, _, err := evidence.NewActivation(rand.Reader, tpm.EKPublic(), tpm.AKPublic())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob, enc)
	f.Add(blob[:3], enc)
	f.Fuzz(func(t *testing.T, blob, enc []byte) {
		tpm.ActivateCredential(blob, enc)
	})
}

// TestUnseal: a credential server/seal made for this TPM unseals in the
// sealed PCR state, and not after a PCR changed nor on another TPM.
func TestUnseal(t *testing.T) {
	tpm, other := newTPM(t), newTPM(t)
	pcrs := []int{0, 4, 15}
	cred, err := seal.Seal(rand.Reader, tpm.EKPublic(), tpm.PCRs(pcrs), []byte("payload"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm.UnsealCredential(cred)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if p, err := seal.OpenPayload(key, cred.Ciphertext, []byte("aad")); err != nil || string(p) != "payload" {
		t.Fatalf("payload = %q, %v", p, err)
	}
	if _, err := other.UnsealCredential(cred); !errors.Is(err, ErrBadCredential) {
		t.Errorf("another TPM's Unseal = %v, want ErrBadCredential", err)
	}
	sum := sha256.Sum256([]byte("released"))
	if err := tpm.ExtendPCR(15, sum[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.UnsealCredential(cred); !errors.Is(err, ErrPolicy) {
		t.Errorf("Unseal after extending PCR 15 = %v, want ErrPolicy", err)
	}
}
