package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// EKCertIndex is the NV index of the RSA-2048 EK certificate (TCG EK
// Credential Profile).
const EKCertIndex = 0x01C00002

// maxEKCert bounds the EK certificate read from NV.
const maxEKCert = 8 << 10

// nvChunk is the NVRead chunk size every TPM supports.
const nvChunk = 512

// AKTemplate is the AK: an ECDSA P-256/SHA-256 restricted signing primary
// key of the endorsement hierarchy. The template is fixed, so the TPM
// derives the same key every boot. Callers must not modify it.
var AKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		Restricted:          true,
		SignEncrypt:         true,
		NoDA:                true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// Keys are the loaded EK and AK. Close flushes them.
type Keys struct {
	// EKPublic and AKPublic are the keys' TPMT_PUBLIC bytes.
	EKPublic []byte
	AKPublic []byte
	// EKCert is the DER EK certificate from NV, or nil when the TPM has
	// none.
	EKCert []byte

	t      *TPM
	ek, ak tpm2.NamedHandle // zero Handle once flushed
}

// LoadKeys creates the EK (tpm2.RSAEKTemplate) and the AK as primary keys of
// the endorsement hierarchy and reads the EK certificate when there is one.
func (t *TPM) LoadKeys(ctx context.Context) (*Keys, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := &Keys{t: t}
	var err error
	if k.EKPublic, k.ek, err = t.createPrimary(ctx, tpm2.RSAEKTemplate); err != nil {
		return nil, fmt.Errorf("create EK: %w", err)
	}
	if k.AKPublic, k.ak, err = t.createPrimary(ctx, AKTemplate); err != nil {
		return nil, errors.Join(fmt.Errorf("create AK: %w", err), k.closeLocked())
	}
	if k.EKCert, err = t.readEKCert(ctx); err != nil {
		return nil, errors.Join(err, k.closeLocked())
	}
	return k, nil
}

func (t *TPM) createPrimary(ctx context.Context, template tpm2.TPMTPublic) ([]byte, tpm2.NamedHandle, error) {
	if err := ctx.Err(); err != nil {
		return nil, tpm2.NamedHandle{}, err
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(template),
	}.Execute(t.tpm)
	if err != nil {
		return nil, tpm2.NamedHandle{}, fmt.Errorf("tpm2.CreatePrimary: %w", err)
	}
	return rsp.OutPublic.Bytes(), tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// readEKCert reads the RSA EK certificate from NV; a missing or unwritten
// index is not an error.
func (t *TPM) readEKCert(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	idx := tpm2.TPMHandle(EKCertIndex)
	pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpm2.NVReadPublic(%#x): %w", EKCertIndex, err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("EK certificate NV public area: %w", err)
	}
	if !nv.Attributes.Written || nv.DataSize == 0 {
		return nil, nil
	}
	if nv.DataSize > maxEKCert {
		return nil, fmt.Errorf("EK certificate of %d bytes is over the limit of %d", nv.DataSize, maxEKCert)
	}
	auth := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if nv.Attributes.AuthRead {
		auth = tpm2.AuthHandle{Handle: idx, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)}
	}
	cert := make([]byte, 0, nv.DataSize)
	for len(cert) < int(nv.DataSize) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: pub.NVName},
			Size:       uint16(min(nvChunk, int(nv.DataSize)-len(cert))),
			Offset:     uint16(len(cert)),
		}.Execute(t.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm2.NVRead(%#x at %d): %w", EKCertIndex, len(cert), err)
		}
		if len(rsp.Data.Buffer) == 0 {
			return nil, fmt.Errorf("tpm2.NVRead(%#x at %d) returned no data", EKCertIndex, len(cert))
		}
		cert = append(cert, rsp.Data.Buffer...)
	}
	return cert[:nv.DataSize], nil
}

// Close flushes the EK and the AK. It is safe to call more than once.
func (k *Keys) Close() error {
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	return k.closeLocked()
}

func (k *Keys) closeLocked() error {
	var errs []error
	for _, h := range []*tpm2.NamedHandle{&k.ak, &k.ek} {
		if h.Handle != 0 {
			errs = append(errs, k.t.flush(h.Handle))
			h.Handle = 0
		}
	}
	return errors.Join(errs...)
}

// check reports ErrClosed when k was closed and refuses keys of another TPM.
func (k *Keys) check(t *TPM) error {
	if k == nil || k.ek.Handle == 0 || k.ak.Handle == 0 {
		return ErrClosed
	}
	if k.t != t {
		return errors.New("keys belong to another TPM")
	}
	return nil
}
