package evidence

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/ektemplate"
)

// fixedKEM is an EK's encapsulation key whose Encapsulate returns a
// fixed seed and ciphertext, so the symmetric half of go-tpm's
// CreateCredential and CreateDuplicate and outerWrap can be compared.
type fixedKEM struct {
	tpm2.LabeledEncapsulationKey
	seed, ciphertext []byte
	labels           []string
}

func (k *fixedKEM) Encapsulate(_ io.Reader, label string) ([]byte, []byte, error) {
	k.labels = append(k.labels, label)
	return bytes.Clone(k.seed), k.ciphertext, nil
}

// testEKs returns an EK public area of every ektemplate kind, with fresh
// keys.
func testEKs(t *testing.T) map[string]*tpm2.TPMTPublic {
	t.Helper()
	out := make(map[string]*tpm2.TPMTPublic)
	for _, k := range ektemplate.Kinds() {
		pub := k.Template
		if pub.Type == tpm2.TPMAlgRSA {
			parms, _ := pub.Parameters.RSADetail()
			key, err := rsa.GenerateKey(rand.Reader, int(parms.KeyBits))
			if err != nil {
				t.Fatal(err)
			}
			pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.Bytes()})
		} else {
			parms, _ := pub.Parameters.ECCDetail()
			curve, size := ecdh.P256(), 32
			if parms.CurveID == tpm2.TPMECCNistP384 {
				curve, size = ecdh.P384(), 48
			}
			key, err := curve.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			point := key.PublicKey().Bytes()[1:]
			pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: point[:size]},
				Y: tpm2.TPM2BECCParameter{Buffer: point[size:]},
			})
		}
		out[k.Name] = &pub
	}
	return out
}

// TestOuterWrapMatchesGoTPM: for every EK kind, createCredential and
// CreateDuplicate produce the bytes go-tpm's CreateCredential and
// CreateDuplicate produce from the same encapsulated seed, under the
// same label.
func TestOuterWrapMatchesGoTPM(t *testing.T) {
	name := append([]byte{0, 0x0b}, bytes.Repeat([]byte{7}, 32)...)
	for kind, ek := range testEKs(t) {
		t.Run(kind, func(t *testing.T) {
			real, err := tpm2.ImportEncapsulationKey(ek)
			if err != nil {
				t.Fatal(err)
			}
			h, _ := real.NameAlg().Hash()
			seed, ciphertext, err := real.Encapsulate(rand.Reader, "IDENTITY")
			if err != nil {
				t.Fatal(err)
			}
			if len(seed) != h.Size() {
				t.Fatalf("seed of %d bytes, want %d", len(seed), h.Size())
			}
			for _, inner := range [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 100), nil} {
				ours, theirs := &fixedKEM{real, seed, ciphertext, nil}, &fixedKEM{real, seed, ciphertext, nil}
				gotID, gotSecret, err := createCredential(nil, ours, name, inner)
				if err != nil {
					t.Fatalf("createCredential() = %v", err)
				}
				wantID, wantSecret, err := tpm2.CreateCredential(nil, theirs, name, inner)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(gotID, wantID) || !bytes.Equal(gotSecret, wantSecret) {
					t.Errorf("createCredential(%d bytes) = %x, want go-tpm's %x", len(inner), gotID, wantID)
				}
				gotDup, gotSeed, err := CreateDuplicate(nil, ours, name, inner)
				if err != nil {
					t.Fatalf("CreateDuplicate() = %v", err)
				}
				wantDup, wantSeed, err := tpm2.CreateDuplicate(nil, theirs, name, inner)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(gotDup, wantDup) || !bytes.Equal(gotSeed, wantSeed) {
					t.Errorf("CreateDuplicate(%d bytes) = %x, want go-tpm's %x", len(inner), gotDup, wantDup)
				}
				if got, want := ours.labels, theirs.labels; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
					t.Errorf("labels %q, want go-tpm's %q", got, want)
				}
			}
		})
	}
}

// TestOuterWrapRefusesParameters: an EK whose symmetric parameters are
// not AES-CFB is refused before anything is encapsulated.
func TestOuterWrapRefusesParameters(t *testing.T) {
	real, err := tpm2.ImportEncapsulationKey(testEKs(t)["rsa2048"])
	if err != nil {
		t.Fatal(err)
	}
	for name, sym := range map[string]*tpm2.TPMTSymDefObject{
		"null": {Algorithm: tpm2.TPMAlgNull},
		"aes_ctr": {
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCTR),
		},
	} {
		k := &symKEM{fixedKEM{real, make([]byte, 32), nil, nil}, sym}
		if _, _, err := createCredential(nil, k, nil, nil); !errors.Is(err, ErrWrap) || len(k.labels) != 0 {
			t.Errorf("%s: createCredential() = %v (encapsulated %d times), want ErrWrap", name, err, len(k.labels))
		}
	}
}

type symKEM struct {
	fixedKEM
	sym *tpm2.TPMTSymDefObject
}

func (k *symKEM) SymmetricParameters() *tpm2.TPMTSymDefObject { return k.sym }
