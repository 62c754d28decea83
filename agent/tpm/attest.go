package tpm

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/wire"
)

// Limits on server-supplied TPM structures, far above their real sizes.
const (
	maxCredentialBlob = 1024
	maxEncSecret      = 1024
	maxQualifyingData = 64
	pcrReadMax        = 8 // PCRs a TPM returns per PCRRead at most
)

// ActivateCredential recovers the secret the server bound to the EK and the
// AK with evidence.NewActivation (TPM2_ActivateCredential). The TPM releases
// it only if the AK named in the blob is loaded beside the EK.
func (t *TPM) ActivateCredential(ctx context.Context, k *Keys, blob, encSecret []byte) ([]byte, error) {
	if len(blob) > maxCredentialBlob || len(encSecret) > maxEncSecret {
		return nil, fmt.Errorf("credential of %d and %d bytes is over the limit", len(blob), len(encSecret))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := k.check(t); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rsp, err := withEK(t, k, func(ek tpm2.AuthHandle) (*tpm2.ActivateCredentialResponse, error) {
		return tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: k.ak.Handle, Name: k.ak.Name, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle:      ek,
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: blob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
		}.Execute(t.tpm)
	})
	if err != nil {
		return nil, fmt.Errorf("tpm2.ActivateCredential: %w", err)
	}
	return rsp.CertInfo.Buffer, nil
}

// Quote signs the sha256 bank of pcrs with the AK (TPM2_Quote), qualifying
// must be wire.QualifyingData. It returns the TPMS_ATTEST bytes and the
// TPMT_SIGNATURE bytes, as evidence.VerifyQuote takes them.
func (t *TPM) Quote(ctx context.Context, k *Keys, qualifying []byte, pcrs []int) (quote, sig []byte, err error) {
	if len(qualifying) > maxQualifyingData {
		return nil, nil, fmt.Errorf("qualifying data of %d bytes is over the limit of %d", len(qualifying), maxQualifyingData)
	}
	indices, err := sortIndices(pcrs)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := k.check(t); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: k.ak.Handle, Name: k.ak.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      pcrSelection(indices),
	}.Execute(t.tpm)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm2.Quote: %w", err)
	}
	return rsp.Quoted.Bytes(), tpm2.Marshal(rsp.Signature), nil
}

// ReadPCRs reads the sha256 bank of pcrs, sorted by index. A TPM returns at
// most 8 PCRs per TPM2_PCR_Read, so they are read in groups; a PCR the TPM
// does not return wraps ErrPCR.
func (t *TPM) ReadPCRs(ctx context.Context, pcrs []int) ([]wire.PCR, error) {
	remaining, err := sortIndices(pcrs)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]wire.PCR, 0, len(remaining))
	for len(remaining) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		group := remaining[:min(pcrReadMax, len(remaining))]
		got, err := t.readPCRGroup(group)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		remaining = slices.DeleteFunc(remaining, func(i uint) bool {
			return slices.ContainsFunc(got, func(p wire.PCR) bool { return p.Index == int(i) })
		})
	}
	slices.SortFunc(out, func(a, b wire.PCR) int { return a.Index - b.Index })
	return out, nil
}

// readPCRGroup reads some of group (sorted), at least one, and checks that
// the TPM returned exactly what its selection says.
func (t *TPM) readPCRGroup(group []uint) ([]wire.PCR, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(group)}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm2.PCRRead: %w", err)
	}
	sel := rsp.PCRSelectionOut.PCRSelections
	if len(sel) != 1 || sel[0].Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("tpm2.PCRRead returned %d banks, want sha256 only: %w", len(sel), ErrPCR)
	}
	var got []uint
	for i, b := range sel[0].PCRSelect {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				got = append(got, uint(8*i+bit))
			}
		}
	}
	if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
		return nil, fmt.Errorf("tpm2.PCRRead returned %d PCRs and %d values for %v: %w", len(got), len(rsp.PCRValues.Digests), group, ErrPCR)
	}
	out := make([]wire.PCR, len(got))
	for i, idx := range got {
		d := rsp.PCRValues.Digests[i].Buffer
		if !slices.Contains(group, idx) || len(d) != 32 {
			return nil, fmt.Errorf("tpm2.PCRRead returned PCR %d (%d bytes), not requested in %v: %w", idx, len(d), group, ErrPCR)
		}
		out[i] = wire.PCR{Index: int(idx), Digest: slices.Clone(d)}
	}
	return out, nil
}

// sortIndices checks PCR indices (non-empty, distinct, 0..MaxPCR) and
// returns them sorted.
func sortIndices(pcrs []int) ([]uint, error) {
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("no PCRs: %w", ErrPCR)
	}
	out := make([]uint, len(pcrs))
	for i, p := range pcrs {
		if p < 0 || p > MaxPCR {
			return nil, fmt.Errorf("PCR %d: %w", p, ErrPCR)
		}
		out[i] = uint(p)
	}
	slices.Sort(out)
	if len(slices.Compact(slices.Clone(out))) != len(out) {
		return nil, fmt.Errorf("repeated PCR in %v: %w", pcrs, ErrPCR)
	}
	return out, nil
}

// pcrSelection selects indices in the sha256 bank, encoded as server/seal
// encodes the sealed object's PolicyPCR.
func pcrSelection(indices []uint) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(indices...),
	}}}
}
