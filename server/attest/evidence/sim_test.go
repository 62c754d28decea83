//go:build cgo

package evidence_test

import (
	"context"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/sealroot/sealroot/agent/tpm"
	"github.com/sealroot/sealroot/wire"
)

// simOutput is real TPM output from the simulator.
type simOutput struct {
	EK, AK     []byte // the agent's EK and ECDSA AK
	Quote, Sig []byte // a quote by the AK over PCRs with Extra
	Extra      []byte
	PCRs       []wire.PCR
	QuotePCRs  []int

	RSAAK               []byte // an RSASSA-2048 AK
	RSAQuote, RSASig    []byte // a quote by it, same PCRs and Extra
	Certify, CertifySig []byte // a TPM2_Certify attestation signed by the RSA AK
}

var rsaAKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgRSA,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		Restricted: true, SignEncrypt: true, NoDA: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme: tpm2.TPMTRSAScheme{
			Scheme:  tpm2.TPMAlgRSASSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		KeyBits: 2048,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
}

// simulate runs the agent's side on a fresh simulator.
func simulate(t testing.TB) *simOutput {
	t.Helper()
	ctx := context.Background()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("simulator.OpenSimulator() = %v", err)
	}
	defer sim.Close()
	tp := tpm.New(sim)
	k, err := tp.LoadKeys(ctx)
	if err != nil {
		t.Fatalf("LoadKeys() = %v", err)
	}
	defer k.Close()
	out := &simOutput{EK: k.EKPublic, AK: k.AKPublic, QuotePCRs: []int{7, 0, 4, 9, 15}}
	if err := tp.ExtendPCR(ctx, 4, []byte("kernel")); err != nil {
		t.Fatalf("ExtendPCR() = %v", err)
	}
	out.Extra = wire.QualifyingData([]byte("nonce"), []byte("exporter"), wire.MachineID(k.EKPublic))
	if out.Quote, out.Sig, err = tp.Quote(ctx, k, out.Extra, out.QuotePCRs); err != nil {
		t.Fatalf("Quote() = %v", err)
	}
	if out.PCRs, err = tp.ReadPCRs(ctx, out.QuotePCRs); err != nil {
		t.Fatalf("ReadPCRs() = %v", err)
	}

	rsaAK, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(rsaAKTemplate)}.Execute(sim)
	if err != nil {
		t.Fatalf("CreatePrimary(RSA AK) = %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsaAK.ObjectHandle}.Execute(sim)
	out.RSAAK = rsaAK.OutPublic.Bytes()
	signer := tpm2.AuthHandle{Handle: rsaAK.ObjectHandle, Name: rsaAK.Name, Auth: tpm2.PasswordAuth(nil)}
	q, err := tpm2.Quote{
		SignHandle:     signer,
		QualifyingData: tpm2.TPM2BData{Buffer: out.Extra},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(0, 4, 7, 9, 15),
		}}},
	}.Execute(sim)
	if err != nil {
		t.Fatalf("Quote(RSA AK) = %v", err)
	}
	out.RSAQuote, out.RSASig = q.Quoted.Bytes(), tpm2.Marshal(q.Signature)
	c, err := tpm2.Certify{
		ObjectHandle:   signer,
		SignHandle:     signer,
		QualifyingData: tpm2.TPM2BData{Buffer: out.Extra},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(sim)
	if err != nil {
		t.Fatalf("Certify() = %v", err)
	}
	out.Certify, out.CertifySig = c.CertifyInfo.Bytes(), tpm2.Marshal(c.Signature)
	return out
}
