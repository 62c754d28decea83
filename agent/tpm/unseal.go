package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/wire"
)

// Limits on the sealed object, far above the sizes server/seal produces.
const (
	maxSealedPublic    = 512
	maxSealedDuplicate = 1024
	maxSealedSeed      = 1024
)

// Unseal imports the credential's sealed object under the EK, loads it and
// unseals it in a PolicyPCR session over c.PCRs, returning the key K that
// decrypts c.Ciphertext. The TPM refuses when its PCRs differ from the
// sealed values (the error wraps ErrPolicyFail) and a credential sealed to
// another TPM's EK does not import (ErrImport). Everything loaded is flushed.
func (t *TPM) Unseal(ctx context.Context, k *Keys, c *wire.Credential) ([]byte, error) {
	if c == nil {
		return nil, errors.New("nil credential")
	}
	if len(c.Public) > maxSealedPublic || len(c.Duplicate) > maxSealedDuplicate || len(c.InSymSeed) > maxSealedSeed {
		return nil, fmt.Errorf("sealed object of %d, %d and %d bytes is over the limit", len(c.Public), len(c.Duplicate), len(c.InSymSeed))
	}
	indices, err := sortIndices(c.PCRs)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := k.check(t); err != nil {
		return nil, err
	}
	obj, err := t.importSealed(ctx, k, c)
	if err != nil {
		return nil, err
	}
	defer t.flush(obj.Handle)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sess, closeSess, err := t.policySession(func(h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
		if _, err := (tpm2.PolicyPCR{PolicySession: h, Pcrs: pcrSelection(indices)}).Execute(t.tpm); err != nil {
			return fmt.Errorf("tpm2.PolicyPCR: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer closeSess()
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name, Auth: sess}}.Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		return nil, fmt.Errorf("tpm2.Unseal: %w: %w", ErrPolicyFail, err)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm2.Unseal: %w", err)
	}
	return rsp.OutData.Buffer, nil
}

// importSealed imports and loads the credential's object under the EK.
func (t *TPM) importSealed(ctx context.Context, k *Keys, c *wire.Credential) (tpm2.NamedHandle, error) {
	if err := ctx.Err(); err != nil {
		return tpm2.NamedHandle{}, err
	}
	public := tpm2.BytesAs2B[tpm2.TPMTPublic](c.Public)
	imp, err := withEK(t, k, func(ek tpm2.AuthHandle) (*tpm2.ImportResponse, error) {
		return tpm2.Import{
			ParentHandle: ek,
			ObjectPublic: public,
			Duplicate:    tpm2.TPM2BPrivate{Buffer: c.Duplicate},
			InSymSeed:    tpm2.TPM2BEncryptedSecret{Buffer: c.InSymSeed},
			Symmetric:    tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
		}.Execute(t.tpm)
	})
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("tpm2.Import: %w: %w", ErrImport, err)
	}
	if err := ctx.Err(); err != nil {
		return tpm2.NamedHandle{}, err
	}
	load, err := withEK(t, k, func(ek tpm2.AuthHandle) (*tpm2.LoadResponse, error) {
		return tpm2.Load{ParentHandle: ek, InPrivate: imp.OutPrivate, InPublic: public}.Execute(t.tpm)
	})
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("tpm2.Load: %w", err)
	}
	return tpm2.NamedHandle{Handle: load.ObjectHandle, Name: load.Name}, nil
}

// withEK runs cmd with the EK authorized in the user role: by its empty
// password for a high-range EK (userWithAuth), else by a fresh endorsement
// policy session, which it flushes afterwards.
func withEK[R any](t *TPM, k *Keys, cmd func(ek tpm2.AuthHandle) (*R, error)) (*R, error) {
	if k.EKKind.UsesPassword() {
		return cmd(tpm2.AuthHandle{Handle: k.ek.Handle, Name: k.ek.Name, Auth: tpm2.PasswordAuth(nil)})
	}
	sess, closeSess, err := t.policySession(t.endorsementPolicy)
	if err != nil {
		return nil, err
	}
	defer closeSess()
	return cmd(tpm2.AuthHandle{Handle: k.ek.Handle, Name: k.ek.Name, Auth: sess})
}
