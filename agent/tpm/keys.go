package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/ektemplate"
)

// maxEKCert bounds one EK certificate (or one chain index) read from NV.
const maxEKCert = 8 << 10

// maxChainIndices and maxChain bound the EK certificate chain read from the
// chain range; a Hello must stay under wire.MaxSize.
const (
	maxChainIndices = 8
	maxChain        = 24 << 10
)

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
	// EKKind is the kind of the EK: the first of ektemplate.Kinds whose
	// certificate is in NV, else RSA-2048 (or ECC P-256 on a TPM without
	// RSA).
	EKKind ektemplate.Kind
	// EKCert is the EK certificate as stored in NV (normally DER), or nil
	// when the TPM has none for EKKind.
	EKCert []byte
	// EKChain holds the contents of the chain range's indices
	// (ektemplate.ChainFirst to ChainLast), each one or more DER
	// certificates.
	EKChain [][]byte

	t      *TPM
	ek, ak tpm2.NamedHandle // zero Handle once flushed
}

// LoadKeys picks the EK (see Keys.EKKind), creates it and the AK as primary
// keys of the endorsement hierarchy, and reads the EK certificate and chain.
func (t *TPM) LoadKeys(ctx context.Context) (*Keys, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := &Keys{t: t}
	var err error
	if k.EKKind, k.EKCert, err = t.findEKCert(ctx); err != nil {
		return nil, err
	}
	if k.EKKind, k.EKPublic, k.ek, err = t.createEK(ctx, k.EKKind, k.EKCert != nil); err != nil {
		return nil, err
	}
	if k.AKPublic, k.ak, err = t.createPrimary(ctx, AKTemplate); err != nil {
		return nil, errors.Join(fmt.Errorf("create AK: %w", err), k.closeLocked())
	}
	if k.EKChain, err = t.readEKChain(ctx); err != nil {
		return nil, errors.Join(err, k.closeLocked())
	}
	return k, nil
}

// findEKCert returns the first kind whose certificate is in NV, with the
// certificate, or RSA-2048 and nil.
func (t *TPM) findEKCert(ctx context.Context) (ektemplate.Kind, []byte, error) {
	for _, kind := range ektemplate.Kinds() {
		cert, err := t.readNV(ctx, kind.CertIndex, maxEKCert)
		if err != nil {
			return ektemplate.Kind{}, nil, fmt.Errorf("read %s EK certificate: %w", kind.Name, err)
		}
		if cert != nil {
			return kind, cert, nil
		}
	}
	return ektemplate.RSA2048, nil, nil
}

// createEK creates the EK of kind and returns the kind it created. Without
// a certificate to match, a TPM that cannot create an RSA key gets the ECC
// P-256 EK instead.
func (t *TPM) createEK(ctx context.Context, kind ektemplate.Kind, certified bool) (ektemplate.Kind, []byte, tpm2.NamedHandle, error) {
	pub, h, err := t.createPrimary(ctx, kind.Template)
	if err != nil && !certified && kind.Name == ektemplate.RSA2048.Name && ctx.Err() == nil {
		if pub, h, eccErr := t.createPrimary(ctx, ektemplate.ECCP256.Template); eccErr == nil {
			return ektemplate.ECCP256, pub, h, nil
		}
	}
	if err != nil {
		return kind, nil, tpm2.NamedHandle{}, fmt.Errorf("create %s EK: %w", kind.Name, err)
	}
	return kind, pub, h, nil
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

// readNV reads a certificate NV index; a missing or unwritten index is not
// an error and yields nil.
func (t *TPM) readNV(ctx context.Context, index uint32, limit int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	idx := tpm2.TPMHandle(index)
	pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpm2.NVReadPublic(%#x): %w", index, err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("NV %#x public area: %w", index, err)
	}
	if !nv.Attributes.Written || nv.DataSize == 0 {
		return nil, nil
	}
	if int(nv.DataSize) > limit {
		return nil, fmt.Errorf("NV %#x of %d bytes is over the limit of %d", index, nv.DataSize, limit)
	}
	auth := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if nv.Attributes.AuthRead {
		auth = tpm2.AuthHandle{Handle: idx, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)}
	}
	data := make([]byte, 0, nv.DataSize)
	for len(data) < int(nv.DataSize) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: pub.NVName},
			Size:       uint16(min(nvChunk, int(nv.DataSize)-len(data))),
			Offset:     uint16(len(data)),
		}.Execute(t.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm2.NVRead(%#x at %d): %w", index, len(data), err)
		}
		if len(rsp.Data.Buffer) == 0 {
			return nil, fmt.Errorf("tpm2.NVRead(%#x at %d) returned no data", index, len(data))
		}
		data = append(data, rsp.Data.Buffer...)
	}
	return data[:nv.DataSize], nil
}

// readEKChain reads the defined indices of the EK certificate chain range,
// at most maxChainIndices of them and maxChain bytes in all.
func (t *TPM) readEKChain(ctx context.Context) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      ektemplate.ChainFirst,
		PropertyCount: maxChainIndices,
	}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm2.GetCapability(NV handles): %w", err)
	}
	handles, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return nil, fmt.Errorf("NV handles: %w", err)
	}
	var chain [][]byte
	total := 0
	for _, h := range handles.Handle {
		if uint32(h) < ektemplate.ChainFirst || uint32(h) > ektemplate.ChainLast || len(chain) == maxChainIndices {
			break
		}
		data, err := t.readNV(ctx, uint32(h), maxChain-total)
		if err != nil {
			return nil, fmt.Errorf("read EK certificate chain: %w", err)
		}
		if data != nil {
			chain = append(chain, data)
			total += len(data)
		}
	}
	return chain, nil
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
