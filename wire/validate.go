package wire

import (
	"errors"
	"fmt"
)

// Hard limits on fields, checked on decode so that later code can trust them.
const (
	maxPublicArea = 1024
	maxCert       = 8 << 10
	// maxChainIndices and maxChain bound Hello.EKChain: the agent reads
	// at most 8 chain indices, 24 KiB in all.
	maxChainIndices = 8
	maxChain        = 24 << 10
	maxPCRIndex     = 23
	maxHints        = 32
	maxHintLen      = 256
)

func (h *Hello) validate() error {
	if len(h.EKPublic) == 0 || len(h.EKPublic) > maxPublicArea {
		return fmt.Errorf("ek_public of %d bytes", len(h.EKPublic))
	}
	if len(h.AKPublic) == 0 || len(h.AKPublic) > maxPublicArea {
		return fmt.Errorf("ak_public of %d bytes", len(h.AKPublic))
	}
	if len(h.EKCert) > maxCert {
		return fmt.Errorf("ek_cert of %d bytes", len(h.EKCert))
	}
	if len(h.EKChain) > maxChainIndices {
		return fmt.Errorf("ek_chain of %d entries", len(h.EKChain))
	}
	total := 0
	for _, c := range h.EKChain {
		if len(c) == 0 {
			return errors.New("empty ek_chain entry")
		}
		total += len(c)
	}
	if total > maxChain {
		return fmt.Errorf("ek_chain of %d bytes", total)
	}
	if len(h.WireGuardKey) != 0 && len(h.WireGuardKey) != 32 {
		return fmt.Errorf("wireguard_key of %d bytes", len(h.WireGuardKey))
	}
	if len(h.Hints.MACs) > maxHints {
		return fmt.Errorf("%d MAC hints", len(h.Hints.MACs))
	}
	for _, s := range append(h.Hints.MACs, h.Hints.SMBIOSUUID, h.Hints.Hostname, h.Hints.Firmware, h.Hints.AgentVer) {
		if len(s) > maxHintLen {
			return errors.New("hint too long")
		}
	}
	return nil
}

func (c *Challenge) validate() error {
	if len(c.Nonce) != NonceSize {
		return fmt.Errorf("nonce of %d bytes", len(c.Nonce))
	}
	if len(c.CredentialBlob) == 0 || len(c.EncryptedSecret) == 0 {
		return errors.New("empty activation challenge")
	}
	return validPCRList(c.PCRs)
}

func (e *Evidence) validate() error {
	if len(e.ActivationProof) != 32 {
		return fmt.Errorf("activation_proof of %d bytes", len(e.ActivationProof))
	}
	if len(e.Quote) == 0 || len(e.Signature) == 0 {
		return errors.New("missing quote or signature")
	}
	if len(e.PCRs) == 0 || len(e.PCRs) > maxPCRIndex+1 {
		return fmt.Errorf("%d PCR values", len(e.PCRs))
	}
	idx := make([]int, len(e.PCRs))
	for i, p := range e.PCRs {
		if len(p.Digest) != 32 {
			return fmt.Errorf("PCR %d digest of %d bytes", p.Index, len(p.Digest))
		}
		idx[i] = p.Index
	}
	return validPCRList(idx)
}

func (c *Credential) validate() error {
	if len(c.Public) == 0 || len(c.Duplicate) == 0 || len(c.InSymSeed) == 0 || len(c.Ciphertext) == 0 {
		return errors.New("incomplete credential")
	}
	return validPCRList(c.PCRs)
}

func validPCRList(pcrs []int) error {
	if len(pcrs) == 0 {
		return errors.New("empty PCR selection")
	}
	seen := make(map[int]bool, len(pcrs))
	for _, p := range pcrs {
		if p < 0 || p > maxPCRIndex {
			return fmt.Errorf("PCR index %d out of range", p)
		}
		if seen[p] {
			return fmt.Errorf("PCR %d listed twice", p)
		}
		seen[p] = true
	}
	return nil
}
