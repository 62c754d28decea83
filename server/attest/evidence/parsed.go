package evidence

import (
	"bytes"
	"crypto"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealroot/sealroot/wire"
)

// Keys are a machine's EK and AK public areas, checked and decoded once
// (ParseKeys): a server keeps them per machine, so an attestation neither
// parses the public areas nor rebuilds the public keys again. A Keys is
// immutable and safe for concurrent use.
type Keys struct {
	ekPublic, akPublic []byte // the bytes parsed, for Matches

	ek     *tpm2.TPMTPublic
	ekKey  crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
	ekKEM  tpm2.LabeledEncapsulationKey
	akKey  crypto.PublicKey // *ecdsa.PublicKey or *rsa.PublicKey
	akName []byte           // the AK's TPM Name
}

// ParseKeys checks and decodes an EK and an AK public area as ParseEK and
// ParseAK do (an EK failure wraps ErrBadEK, an AK failure ErrBadAK; the EK
// is checked first).
func ParseKeys(ekPublic, akPublic []byte) (*Keys, error) {
	ek, err := ParseEK(ekPublic)
	if err != nil {
		return nil, err
	}
	ekKey, err := tpm2.Pub(*ek)
	if err != nil {
		return nil, fmt.Errorf("EK public key: %v: %w", err, ErrBadEK)
	}
	kem, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("EK encapsulation key: %v: %w", err, ErrBadEK)
	}
	akKey, err := parseAKKey(akPublic)
	if err != nil {
		return nil, err
	}
	return &Keys{
		ekPublic: bytes.Clone(ekPublic),
		akPublic: bytes.Clone(akPublic),
		ek:       ek,
		ekKey:    ekKey,
		ekKEM:    kem,
		akKey:    akKey,
		akName:   objectName(akPublic),
	}, nil
}

// EK returns the EK's public area. It is shared: the caller must not
// change it.
func (k *Keys) EK() *tpm2.TPMTPublic { return k.ek }

// EKKey returns the EK's public key, an *rsa.PublicKey or an
// *ecdsa.PublicKey. It is shared: the caller must not change it.
func (k *Keys) EKKey() crypto.PublicKey { return k.ekKey }

// EKEncapsulation returns the EK as the key that secrets are wrapped to
// (credential activation, duplication to the TPM).
func (k *Keys) EKEncapsulation() tpm2.LabeledEncapsulationKey { return k.ekKEM }

// Matches reports whether k was parsed from exactly these public areas.
func (k *Keys) Matches(ekPublic, akPublic []byte) bool {
	return bytes.Equal(k.ekPublic, ekPublic) && bytes.Equal(k.akPublic, akPublic)
}

// parseAKKey checks an AK public area with ParseAK and returns its public
// key: *ecdsa.PublicKey or *rsa.PublicKey.
func parseAKKey(akPublic []byte) (crypto.PublicKey, error) {
	ak, err := ParseAK(akPublic)
	if err != nil {
		return nil, err
	}
	switch ak.Type {
	case tpm2.TPMAlgECC:
		point, err := ak.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("AK ECC point: %v: %w", err, ErrBadAK)
		}
		return ecdsaKey(point)
	case tpm2.TPMAlgRSA:
		return rsaKey(ak)
	}
	return nil, fmt.Errorf("AK key type %v: %w", ak.Type, ErrBadAK)
}

// NewActivation is the package's NewActivation for k's EK and AK.
func (k *Keys) NewActivation(rand io.Reader) (blob, encSecret, secret []byte, err error) {
	secret = make([]byte, ActivationSecretSize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return nil, nil, nil, fmt.Errorf("activation secret: %w", err)
	}
	blob, encSecret, err = createCredential(rand, k.ekKEM, k.akName, secret)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("make credential: %w", err)
	}
	return blob, encSecret, secret, nil
}

// VerifyQuote is the package's VerifyQuote with k's AK.
func (k *Keys) VerifyQuote(quote, sig, extraData []byte, pcrs []wire.PCR) (*QuoteInfo, error) {
	return verifyQuote(k.akKey, quote, sig, extraData, pcrs)
}
