package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
	"unicode/utf16"
)

// Authenticated variable updates (UEFI spec 8.2.2, "Using the
// EFI_VARIABLE_AUTHENTICATION_2 descriptor"): what a firmware setup menu
// or `efi-updatevar -f db.auth db` writes when the machine is not in
// Setup Mode, equivalent to efitools' sign-efi-sig-list.

// Variable attributes of a time-based authenticated update.
const (
	attrNonVolatile     = 0x00000001
	attrBootService     = 0x00000002
	attrRuntime         = 0x00000004
	attrTimeBasedAuth   = 0x00000020
	attrAppendWrite     = 0x00000040
	winCertTypeEFIGUID  = 0x0EF1
	winCertRevision     = 0x0200
	efiCertTypePKCS7    = "4aafd29d-68df-49ee-8aa9-347d375665a7"
	efiGlobalVariable   = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
	imageSecurityDBGUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
)

// ErrVariable means a variable name SignedUpdate does not know.
var ErrVariable = errors.New("secureboot: want variable PK, KEK, db or dbx")

// Update is an authenticated write of a Secure Boot variable.
type Update struct {
	// Name is PK, KEK, db or dbx.
	Name string
	// Data is the new value (or, with Append, what to append):
	// EFI_SIGNATURE_LISTs, such as owner.esl.
	Data []byte
	// Append adds Data to the variable instead of replacing it
	// (EFI_VARIABLE_APPEND_WRITE).
	Append bool
	// Time is the update's timestamp; firmware refuses a replacement
	// older than the variable's, so it is normally now. It is taken in
	// UTC to the second.
	Time time.Time
}

// Sign returns the update as an EFI_VARIABLE_AUTHENTICATION_2 descriptor
// followed by the data, signed with key and cert: a key whose certificate
// is in KEK (for db and dbx) or PK (for KEK and PK). The signature is a
// detached PKCS #7 SignedData without authenticated attributes over
// name (UTF-16LE, no NUL) || vendor GUID || attributes || timestamp ||
// data, SHA-256 with RSA PKCS #1 v1.5; deterministic, so it is byte for
// byte what `sign-efi-sig-list -t <time> [-a] -k key -c cert <name>`
// writes.
func (u Update) Sign(key *rsa.PrivateKey, cert *x509.Certificate) ([]byte, error) {
	payload, err := u.Payload()
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(payload)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return nil, fmt.Errorf("secureboot: sign %s update: %w", u.Name, err)
	}
	p7, err := signedData(cert, sig)
	if err != nil {
		return nil, fmt.Errorf("secureboot: sign %s update: %w", u.Name, err)
	}
	certType, _ := guidBytes(efiCertTypePKCS7)
	var b bytes.Buffer
	b.Write(efiTime(u.Time))
	binary.Write(&b, binary.LittleEndian, uint32(8+16+len(p7))) // WIN_CERTIFICATE.dwLength
	binary.Write(&b, binary.LittleEndian, uint16(winCertRevision))
	binary.Write(&b, binary.LittleEndian, uint16(winCertTypeEFIGUID))
	b.Write(certType)
	b.Write(p7)
	b.Write(u.Data)
	return b.Bytes(), nil
}

// Payload returns the bytes the update's signature covers (what
// `sign-efi-sig-list -o` writes).
func (u Update) Payload() ([]byte, error) {
	guid, err := variableGUID(u.Name)
	if err != nil {
		return nil, err
	}
	attrs := uint32(attrNonVolatile | attrBootService | attrRuntime | attrTimeBasedAuth)
	if u.Append {
		attrs |= attrAppendWrite
	}
	var b bytes.Buffer
	for _, c := range utf16.Encode([]rune(u.Name)) {
		binary.Write(&b, binary.LittleEndian, c)
	}
	b.Write(guid)
	binary.Write(&b, binary.LittleEndian, attrs)
	b.Write(efiTime(u.Time))
	b.Write(u.Data)
	return b.Bytes(), nil
}

func variableGUID(name string) ([]byte, error) {
	switch name {
	case "PK", "KEK":
		return guidBytes(efiGlobalVariable)
	case "db", "dbx":
		return guidBytes(imageSecurityDBGUID)
	}
	return nil, fmt.Errorf("%w, not %q", ErrVariable, name)
}

// efiTime encodes t (UTC, whole seconds) as an EFI_TIME: Year, Month,
// Day, Hour, Minute, Second, Pad1, Nanosecond, TimeZone, Daylight, Pad2;
// the last fields zero, as the spec requires for authenticated variables.
func efiTime(t time.Time) []byte {
	t = t.UTC()
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b, uint16(t.Year()))
	b[2], b[3], b[4], b[5], b[6] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	return b
}

// ASN.1 of a PKCS #7 SignedData (RFC 2315, 9.1) with one signer, no
// authenticated attributes and detached content.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

type p7SignedData struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	ContentInfo      struct{ ContentType asn1.ObjectIdentifier }
	Certificates     asn1.RawValue  `asn1:"tag:0,optional"`
	SignerInfos      []p7SignerInfo `asn1:"set"`
}

type p7SignerInfo struct {
	Version                   int
	IssuerAndSerialNumber     p7IssuerAndSerial
	DigestAlgorithm           pkix.AlgorithmIdentifier
	DigestEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedDigest           []byte
}

type p7IssuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

// signedData encodes the SignedData of one RSA signature by cert.
func signedData(cert *x509.Certificate, sig []byte) ([]byte, error) {
	null := asn1.RawValue{Tag: asn1.TagNull}
	sha := pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: null}
	sd := p7SignedData{
		Version:          1,
		DigestAlgorithms: []pkix.AlgorithmIdentifier{sha},
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: cert.Raw},
		SignerInfos: []p7SignerInfo{{
			Version:                   1,
			IssuerAndSerialNumber:     p7IssuerAndSerial{Issuer: asn1.RawValue{FullBytes: cert.RawIssuer}, Serial: cert.SerialNumber},
			DigestAlgorithm:           sha,
			DigestEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: null},
			EncryptedDigest:           sig,
		}},
	}
	sd.ContentInfo.ContentType = oidData
	return asn1.Marshal(sd)
}

// LoadSigner reads an RSA key (PEM, PKCS #8 or PKCS #1, unencrypted) and
// its certificate (PEM or DER), e.g. a site's KEK pair, and checks that
// they match.
func LoadSigner(keyPath, certPath string) (*rsa.PrivateKey, *x509.Certificate, error) {
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("secureboot: key: %w", err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("secureboot: key %s: no PEM block (an encrypted key must be decrypted first: openssl pkey -in KEY -out PLAIN)", keyPath)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		key, _ = k.(*rsa.PrivateKey)
	} else if key, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
		return nil, nil, fmt.Errorf("secureboot: key %s: %w", keyPath, err)
	}
	if key == nil {
		return nil, nil, fmt.Errorf("secureboot: key %s: not an RSA key (UEFI verifies RSA-2048 only)", keyPath)
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("secureboot: certificate: %w", err)
	}
	if blk, _ := pem.Decode(cb); blk != nil {
		cb = blk.Bytes
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("secureboot: certificate %s: %w", certPath, err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, fmt.Errorf("secureboot: certificate %s is not for key %s", certPath, keyPath)
	}
	return key, cert, nil
}
