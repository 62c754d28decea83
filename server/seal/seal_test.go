package seal_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/server/seal"
	"github.com/sealroot/sealroot/wire"
)

// softwareEK returns the TPMT_PUBLIC bytes of an RSA EK whose modulus is a
// fresh software key: what Seal sees from a TPM, without one.
func softwareEK(t testing.TB) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.RSAEKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.FillBytes(make([]byte, 256))})
	return tpm2.Marshal(pub)
}

func testPCRs() []wire.PCR {
	var pcrs []wire.PCR
	for _, i := range []int{15, 9, 0, 4, 7, 11} {
		pcrs = append(pcrs, wire.PCR{Index: i, Digest: bytes.Repeat([]byte{byte(i)}, 32)})
	}
	return pcrs
}

func TestSealCredential(t *testing.T) {
	ek := softwareEK(t)
	pcrs := testPCRs()
	c, err := seal.Seal(rand.Reader, ek, pcrs, []byte("payload"), []byte("aad"))
	if err != nil {
		t.Fatalf("Seal() = %v", err)
	}
	if want := []int{0, 4, 7, 9, 11, 15}; !slices.Equal(c.PCRs, want) {
		t.Errorf("Credential.PCRs = %v, want %v", c.PCRs, want)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](c.Public)
	if err != nil {
		t.Fatalf("Unmarshal(Credential.Public) = %v", err)
	}
	want := tpm2.TPMAObject{AdminWithPolicy: true, NoDA: true}
	if pub.Type != tpm2.TPMAlgKeyedHash || pub.ObjectAttributes != want {
		t.Errorf("sealed object type %v attributes %+v, want keyed hash with %+v", pub.Type, pub.ObjectAttributes, want)
	}
	policy, err := seal.PolicyDigest(pcrs)
	if err != nil {
		t.Fatalf("PolicyDigest() = %v", err)
	}
	if !bytes.Equal(pub.AuthPolicy.Buffer, policy) {
		t.Errorf("sealed object AuthPolicy = %x, want PolicyDigest %x", pub.AuthPolicy.Buffer, policy)
	}
	if len(c.Ciphertext) != seal.NonceSize+len("payload")+16 {
		t.Errorf("Ciphertext of %d bytes", len(c.Ciphertext))
	}
}

func TestSealRejects(t *testing.T) {
	ek := softwareEK(t)
	if _, err := seal.Seal(rand.Reader, ek[:len(ek)-1], testPCRs(), nil, nil); !errors.Is(err, evidence.ErrBadEK) {
		t.Errorf("Seal(truncated EK) = %v, want ErrBadEK", err)
	}
	if _, err := seal.Seal(rand.Reader, ek, nil, nil, nil); !errors.Is(err, seal.ErrPCRs) {
		t.Errorf("Seal(no PCRs) = %v, want ErrPCRs", err)
	}
	if _, err := seal.Seal(bytes.NewReader(make([]byte, 40)), ek, testPCRs(), nil, nil); err == nil {
		t.Errorf("Seal(short random source) succeeded")
	}
}

func TestPolicyDigest(t *testing.T) {
	pcrs := testPCRs()
	a, err := seal.PolicyDigest(pcrs)
	if err != nil {
		t.Fatalf("PolicyDigest() = %v", err)
	}
	reversed := slices.Clone(pcrs)
	slices.Reverse(reversed)
	if b, _ := seal.PolicyDigest(reversed); !bytes.Equal(a, b) {
		t.Errorf("PolicyDigest depends on the order of the PCRs")
	}
	changed := slices.Clone(pcrs)
	changed[0] = wire.PCR{Index: 15, Digest: make([]byte, 32)}
	if b, _ := seal.PolicyDigest(changed); bytes.Equal(a, b) {
		t.Errorf("PolicyDigest ignores a PCR value")
	}
	for _, tc := range []struct {
		name string
		pcrs []wire.PCR
	}{
		{"empty", nil},
		{"negative_index", []wire.PCR{{Index: -1, Digest: make([]byte, 32)}}},
		{"index_24", []wire.PCR{{Index: 24, Digest: make([]byte, 32)}}},
		{"repeated", []wire.PCR{{Index: 1, Digest: make([]byte, 32)}, {Index: 1, Digest: make([]byte, 32)}}},
		{"sha1_value", []wire.PCR{{Index: 1, Digest: make([]byte, 20)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := seal.PolicyDigest(tc.pcrs); !errors.Is(err, seal.ErrPCRs) {
				t.Errorf("PolicyDigest() = %v, want ErrPCRs", err)
			}
		})
	}
}

func TestOpenPayload(t *testing.T) {
	key := bytes.Repeat([]byte{7}, seal.KeySize)
	// Seal does not expose the key: build a ciphertext the same way.
	c, err := seal.Seal(rand.Reader, softwareEK(t), testPCRs(), []byte("payload"), []byte("aad"))
	if err != nil {
		t.Fatalf("Seal() = %v", err)
	}
	for _, tc := range []struct {
		name                 string
		key, ciphertext, aad []byte
	}{
		{"wrong_key", key, c.Ciphertext, []byte("aad")},
		{"short_key", key[:16], c.Ciphertext, []byte("aad")},
		{"empty_ciphertext", key, nil, nil},
		{"truncated_ciphertext", key, c.Ciphertext[:seal.NonceSize+15], []byte("aad")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := seal.OpenPayload(tc.key, tc.ciphertext, tc.aad); !errors.Is(err, seal.ErrDecrypt) {
				t.Errorf("OpenPayload() = %v, want ErrDecrypt", err)
			}
		})
	}
}

func BenchmarkSeal(b *testing.B) {
	ek := softwareEK(b)
	pcrs := testPCRs()
	payload := bytes.Repeat([]byte("x"), 1024)
	aad := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := seal.Seal(rand.Reader, ek, pcrs, payload, aad); err != nil {
			b.Fatal(err)
		}
	}
}
