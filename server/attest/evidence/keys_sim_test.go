//go:build cgo

package evidence_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/sealroot/sealroot/ektemplate"
	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/wire"
)

func TestParseEK(t *testing.T) {
	s := simulate(t)
	pub, err := evidence.ParseEK(s.EK)
	if err != nil {
		t.Fatalf("ParseEK(simulator EK) = %v", err)
	}
	if !bytes.Equal(tpm2.Marshal(*pub), s.EK) {
		t.Errorf("ParseEK() does not re-encode to its input")
	}
	sum := sha256.Sum256(s.EK)
	if got := wire.MachineID(s.EK); got != hex.EncodeToString(sum[:]) {
		t.Errorf("MachineID() = %s, want hex SHA-256 of the EK", got)
	}
	eccEK := tpm2.Marshal(tpm2.ECCEKTemplate)
	attrs := bytes.Clone(s.EK)
	attrs[7] ^= 0x40 // ObjectAttributes low byte: NoDA
	even := bytes.Clone(s.EK)
	even[len(even)-1] &^= 1
	for _, tc := range []struct {
		name string
		ek   []byte
	}{
		{"empty", nil},
		{"truncated", s.EK[:len(s.EK)-1]},
		{"trailing_byte", append(bytes.Clone(s.EK), 0)},
		{"ecc_ek", eccEK},
		{"attributes_changed", attrs},
		{"even_modulus", even},
		{"ak", s.AK},
		{"rsa_ak", s.RSAAK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := evidence.ParseEK(tc.ek); !errors.Is(err, evidence.ErrBadEK) {
				t.Errorf("ParseEK() = %v, want ErrBadEK", err)
			}
		})
	}
}

func TestParseAK(t *testing.T) {
	s := simulate(t)
	for _, ak := range [][]byte{s.AK, s.RSAAK} {
		pub, err := evidence.ParseAK(ak)
		if err != nil {
			t.Fatalf("ParseAK(simulator AK) = %v", err)
		}
		if !bytes.Equal(tpm2.Marshal(*pub), ak) {
			t.Errorf("ParseAK() does not re-encode to its input")
		}
	}
	modify := func(ak []byte, mod func(*tpm2.TPMTPublic)) []byte {
		pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ak)
		if err != nil {
			t.Fatalf("Unmarshal(AK) = %v", err)
		}
		mod(pub)
		return tpm2.Marshal(*pub)
	}
	offCurve := modify(s.AK, func(p *tpm2.TPMTPublic) {
		pt, _ := p.Unique.ECC()
		pt.Y.Buffer = bytes.Clone(pt.Y.Buffer)
		pt.Y.Buffer[31] ^= 1
	})
	for _, tc := range []struct {
		name string
		ak   []byte
	}{
		{"empty", nil},
		{"truncated", s.AK[:len(s.AK)-1]},
		{"trailing_byte", append(bytes.Clone(s.AK), 0)},
		{"ek", s.EK},
		{"not_restricted", modify(s.AK, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false })},
		{"not_fixed_tpm", modify(s.AK, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false })},
		{"not_fixed_parent", modify(s.RSAAK, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false })},
		{"imported", modify(s.AK, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false })},
		{"decrypt", modify(s.AK, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true })},
		{"sha1_name", modify(s.AK, func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 })},
		{"p384", modify(s.AK, func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.ECCDetail()
			parms.CurveID = tpm2.TPMECCNistP384
		})},
		{"rsa_1024", modify(s.RSAAK, func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.RSADetail()
			parms.KeyBits = 1024
		})},
		{"point_off_curve", offCurve},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := evidence.ParseAK(tc.ak); !errors.Is(err, evidence.ErrBadAK) {
				t.Errorf("ParseAK() = %v, want ErrBadAK", err)
			}
		})
	}
}

func TestNewActivationRejectsKeys(t *testing.T) {
	s := simulate(t)
	if _, _, _, err := evidence.NewActivation(nil, s.AK, s.AK); !errors.Is(err, evidence.ErrBadEK) {
		t.Errorf("NewActivation(AK as EK) = %v, want ErrBadEK", err)
	}
	if _, _, _, err := evidence.NewActivation(nil, s.EK, s.EK); !errors.Is(err, evidence.ErrBadAK) {
		t.Errorf("NewActivation(EK as AK) = %v, want ErrBadAK", err)
	}
	if _, err := evidence.ParseKeys(s.AK, s.EK); !errors.Is(err, evidence.ErrBadEK) {
		t.Errorf("ParseKeys(AK as EK, EK as AK) = %v, want ErrBadEK (the EK is checked first)", err)
	}
	k, err := evidence.ParseKeys(s.EK, s.AK)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Matches(s.EK, s.AK) || k.Matches(s.EK, s.RSAAK) {
		t.Error("Keys.Matches does not match exactly the public areas parsed")
	}
}

func FuzzParseEK(f *testing.F) {
	s := simulate(f)
	f.Add(s.EK)
	f.Add(s.AK)
	for _, ek := range simulatorEKs(f) {
		f.Add(ek)
	}
	f.Fuzz(func(t *testing.T, ek []byte) {
		pub, err := evidence.ParseEK(ek)
		if err == nil && !bytes.Equal(tpm2.Marshal(*pub), ek) {
			t.Fatalf("ParseEK accepted a non-canonical encoding %x", ek)
		}
	})
}

func FuzzParseAK(f *testing.F) {
	s := simulate(f)
	f.Add(s.AK)
	f.Add(s.RSAAK)
	f.Add(s.EK)
	f.Fuzz(func(t *testing.T, ak []byte) {
		pub, err := evidence.ParseAK(ak)
		if err == nil && !bytes.Equal(tpm2.Marshal(*pub), ak) {
			t.Fatalf("ParseAK accepted a non-canonical encoding %x", ak)
		}
	})
}

// TestParseEKKinds: the EK of every ektemplate kind the simulator can
// create parses and re-encodes to its input; a P-384 EK with a truncated
// coordinate or a point off the curve does not.
func TestParseEKKinds(t *testing.T) {
	for _, ek := range simulatorEKs(t) {
		pub, err := evidence.ParseEK(ek)
		if err != nil {
			t.Errorf("ParseEK(%d-byte EK) = %v", len(ek), err)
			continue
		}
		if !bytes.Equal(tpm2.Marshal(*pub), ek) {
			t.Errorf("ParseEK(%d-byte EK) does not re-encode to its input", len(ek))
		}
	}
	p384 := simulatorEKs(t)[2]
	short := bytes.Clone(p384[:len(p384)-1])
	offCurve := bytes.Clone(p384)
	offCurve[len(offCurve)-1] ^= 1
	for name, ek := range map[string][]byte{"truncated": short, "off_curve": offCurve} {
		if _, err := evidence.ParseEK(ek); !errors.Is(err, evidence.ErrBadEK) {
			t.Errorf("ParseEK(P-384 %s) = %v, want ErrBadEK", name, err)
		}
	}
}

// simulatorEKs creates the RSA-2048, P-256 and P-384 EKs on a fresh
// simulator (it has no RSA-3072) and returns their public areas.
func simulatorEKs(t testing.TB) [][]byte {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("simulator.OpenSimulator() = %v", err)
	}
	defer sim.Close()
	var out [][]byte
	for _, k := range ektemplate.Kinds()[:3] {
		rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(k.Template)}.Execute(sim)
		if err != nil {
			t.Fatalf("CreatePrimary(%s EK) = %v", k.Name, err)
		}
		tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(sim)
		out = append(out, rsp.OutPublic.Bytes())
	}
	return out
}
