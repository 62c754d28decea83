package seal

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/wire"
)

// TestSealedObjectEncoding checks the hand encoding against go-tpm's.
func TestSealedObjectEncoding(t *testing.T) {
	policy := bytes.Repeat([]byte{1}, 32)
	seed := bytes.Repeat([]byte{2}, 32)
	key := bytes.Repeat([]byte{3}, 32)
	public, sensitive := sealedObject(policy, seed, key)
	unique := sha256.Sum256(append(bytes.Clone(seed), key...))
	wantPublic := tpm2.Marshal(tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{AdminWithPolicy: true, NoDA: true},
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: unique[:]}),
	})
	if !bytes.Equal(public, wantPublic) {
		t.Errorf("sealed public area\n got %x\nwant %x", public, wantPublic)
	}
	wantSensitive := tpm2.Marshal(tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		SeedValue:     tpm2.TPM2BDigest{Buffer: seed},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BSensitiveData{Buffer: key}),
	})
	if !bytes.Equal(sensitive, wantSensitive) {
		t.Errorf("sealed sensitive area\n got %x\nwant %x", sensitive, wantSensitive)
	}
}

// TestPolicyDigestEncoding checks the hand-computed PolicyPCR digest
// against tpm2.PolicyCalculator for several selections.
func TestPolicyDigestEncoding(t *testing.T) {
	for _, tc := range []struct {
		name    string
		indices []int
	}{
		{"one_pcr", []int{0}},
		{"boot_pcrs", []int{0, 2, 4, 7, 9, 11, 12, 15}},
		{"all_pcrs", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pcrs []wire.PCR
			values := sha256.New()
			var sel []uint
			for _, i := range tc.indices {
				d := bytes.Repeat([]byte{byte(i + 1)}, 32)
				pcrs = append(pcrs, wire.PCR{Index: i, Digest: d})
				values.Write(d)
				sel = append(sel, uint(i))
			}
			calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
			if err != nil {
				t.Fatal(err)
			}
			err = tpm2.PolicyPCR{
				PcrDigest: tpm2.TPM2BDigest{Buffer: values.Sum(nil)},
				Pcrs: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
					Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(sel...),
				}}},
			}.Update(calc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := PolicyDigest(pcrs)
			if err != nil {
				t.Fatalf("PolicyDigest() = %v", err)
			}
			if want := calc.Hash().Digest; !bytes.Equal(got, want) {
				t.Errorf("PolicyDigest() = %x, want %x", got, want)
			}
		})
	}
}
