package tpmtest

import (
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

// ExtendDigest returns a fakeboot.Extender that issues TPM2_PCR_Extend on
// tpm's sha256 bank with each digest as is.
func ExtendDigest(tpm transport.TPM) fakeboot.Extender {
	return extender{tpm}
}

type extender struct{ tpm transport.TPM }

func (e extender) ExtendPCR(pcr int, digest []byte) error {
	if pcr < 0 || pcr > 23 || len(digest) != sha256.Size {
		return fmt.Errorf("extend PCR %d with %d bytes: invalid", pcr, len(digest))
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: digest},
		}},
	}.Execute(e.tpm)
	if err != nil {
		return fmt.Errorf("tpm2.PCRExtend(%d): %w", pcr, err)
	}
	return nil
}

// ReadPCRs reads sha256 PCRs in the order given. TPM2_PCR_Read returns at
// most 8 PCRs per call, so it reads one PCR per call and checks the
// returned selection.
func ReadPCRs(tpm transport.TPM, indices []int) ([]wire.PCR, error) {
	out := make([]wire.PCR, 0, len(indices))
	for _, i := range indices {
		if i < 0 || i > 23 {
			return nil, fmt.Errorf("read PCR %d: invalid index", i)
		}
		sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
			{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(uint(i))},
		}}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm2.PCRRead(%d): %w", i, err)
		}
		if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
			return nil, fmt.Errorf("tpm2.PCRRead(%d): %d values returned", i, len(rsp.PCRValues.Digests))
		}
		out = append(out, wire.PCR{Index: i, Digest: rsp.PCRValues.Digests[0].Buffer})
	}
	return out, nil
}
