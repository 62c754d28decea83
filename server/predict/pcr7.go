package predict

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PCRSecureBootPolicy is PCR 7, where UEFI firmware measures its Secure
// Boot policy (TCG PC Client PFP, 3.3.4.8).
const PCRSecureBootPolicy = 7

// Secure Boot variable files in a SecureBootVars directory: the variables'
// data (EFI_SIGNATURE_LISTs), as `efi-readvar -v db -o db.esl` writes it.
// A missing dbx file means an empty dbx (as OVMF's templates ship).
const (
	PKFile  = "PK.esl"
	KEKFile = "KEK.esl"
	DBFile  = "db.esl"
	DBXFile = "dbx.esl"
)

// SecureBootVars are the Secure Boot variables a machine's firmware
// holds, each the variable's data: EFI_SIGNATURE_LISTs (UEFI spec 32.4.1).
type SecureBootVars struct {
	PK, KEK, DB, DBX []byte
}

// SecureBootPrediction is PCR 7 of a machine booting with Secure Boot on.
type SecureBootPrediction struct {
	// Events are PCR 7's events in order: the SecureBoot, PK, KEK, db and
	// dbx variables (EV_EFI_VARIABLE_DRIVER_CONFIG), the separator, then
	// one EV_EFI_VARIABLE_AUTHORITY per distinct db entry that verified a
	// loaded image.
	Events []Event `json:"events"`
	PCR7   []byte  `json:"pcr7"`
}

// PCR7Variables is the number of variable events before the separator in
// SecureBootPrediction.Events.
const PCR7Variables = 5

// GUIDs of the variables measured into PCR 7.
const (
	efiGlobalVariableGUID      = "8be4df61-93ca-11d2-aa0d-00e098032b8c" // SecureBoot, PK, KEK
	imageSecurityDatabaseGUID  = "d719b2cb-3d3a-4596-a3bc-dad00e67656f" // db, dbx
	efiCertX509GUID            = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
	eslHeaderSize              = 28
	maxSecureBootVariableBytes = 1 << 20
)

// ErrNotInDB means a signer is verified by no certificate in db: the
// firmware would refuse the images it signed.
var ErrNotInDB = errors.New("predict: signer not trusted by db")

// PredictPCR7 returns the PCR 7 events a UEFI firmware with Secure Boot on
// and vars enrolled measures when it loads images signed by signers, in
// load order, as EDK2 (Tcg2Dxe, DxeImageVerificationLib) and PC firmware
// do (TCG PC Client PFP, 10.4.4):
//
//   - EV_EFI_VARIABLE_DRIVER_CONFIG for SecureBoot (1), PK, KEK, db, dbx:
//     SHA-256 of a UEFI_VARIABLE_DATA (vendor GUID, name length, data
//     length, UTF-16 name without NUL, data);
//   - EV_SEPARATOR: SHA-256 of the UINT32 0;
//   - EV_EFI_VARIABLE_AUTHORITY for each distinct db entry that verified
//     an image: UEFI_VARIABLE_DATA of "db" whose data is that
//     EFI_SIGNATURE_DATA (owner GUID and certificate). The entry is the
//     signer's certificate or its issuer's.
//
// Images loaded through shim and verified by MokList are not covered.
func PredictPCR7(vars SecureBootVars, signers []*x509.Certificate) (*SecureBootPrediction, error) {
	db, err := signatureData(vars.DB)
	if err != nil {
		return nil, fmt.Errorf("predict: db: %w", err)
	}
	for name, v := range map[string][]byte{"PK": vars.PK, "KEK": vars.KEK, "dbx": vars.DBX} {
		if _, err := signatureData(v); err != nil {
			return nil, fmt.Errorf("predict: %s: %w", name, err)
		}
	}
	p := &SecureBootPrediction{}
	add := func(name string, data []byte) {
		p.Events = append(p.Events, Event{Name: name, Digest: sum(data)})
	}
	add("SecureBoot", VariableData(efiGlobalVariableGUID, "SecureBoot", []byte{1}))
	add("PK", VariableData(efiGlobalVariableGUID, "PK", vars.PK))
	add("KEK", VariableData(efiGlobalVariableGUID, "KEK", vars.KEK))
	add("db", VariableData(imageSecurityDatabaseGUID, "db", vars.DB))
	add("dbx", VariableData(imageSecurityDatabaseGUID, "dbx", vars.DBX))
	add("separator", []byte{0, 0, 0, 0})
	var seen [][]byte
	for _, signer := range signers {
		entry, cert := dbEntry(db, signer)
		if entry == nil {
			return nil, fmt.Errorf("%w: %s", ErrNotInDB, signer.Subject)
		}
		if slices.ContainsFunc(seen, func(b []byte) bool { return bytes.Equal(b, entry) }) {
			continue
		}
		seen = append(seen, entry)
		add("db authority "+cert.Subject.String(), VariableData(imageSecurityDatabaseGUID, "db", entry))
	}
	p.PCR7 = Replay(p.Events)
	return p, nil
}

// dbEntry returns the EFI_SIGNATURE_DATA of db (X.509 entries) that
// verifies signer: the signer itself or its issuer, and its certificate.
func dbEntry(db []sigData, signer *x509.Certificate) ([]byte, *x509.Certificate) {
	for _, d := range db {
		if d.typ != efiCertX509GUID {
			continue
		}
		c, err := x509.ParseCertificate(d.data[16:])
		if err != nil {
			continue
		}
		if c.Equal(signer) || signer.CheckSignatureFrom(c) == nil {
			return d.data, c
		}
	}
	return nil, nil
}

// sigData is one EFI_SIGNATURE_DATA of a list: its type, and its bytes
// (owner GUID, then the signature).
type sigData struct {
	typ  string
	data []byte
}

// signatureData splits variable data made of EFI_SIGNATURE_LISTs into
// their EFI_SIGNATURE_DATA entries.
func signatureData(b []byte) ([]sigData, error) {
	if len(b) > maxSecureBootVariableBytes {
		return nil, fmt.Errorf("%d bytes, over %d", len(b), maxSecureBootVariableBytes)
	}
	var out []sigData
	for len(b) > 0 {
		if len(b) < eslHeaderSize {
			return nil, fmt.Errorf("signature list header truncated at %d bytes", len(b))
		}
		typ := guidString(b[:16])
		listSize := binary.LittleEndian.Uint32(b[16:])
		hdrSize := binary.LittleEndian.Uint32(b[20:])
		sigSize := binary.LittleEndian.Uint32(b[24:])
		if uint64(listSize) > uint64(len(b)) || uint64(eslHeaderSize)+uint64(hdrSize) > uint64(listSize) || sigSize < 16 {
			return nil, fmt.Errorf("signature list of %d bytes (header %d, entries %d) in %d bytes", listSize, hdrSize, sigSize, len(b))
		}
		body := b[eslHeaderSize+hdrSize : listSize]
		if uint32(len(body))%sigSize != 0 {
			return nil, fmt.Errorf("signature list body of %d bytes is not a multiple of %d", len(body), sigSize)
		}
		for ; len(body) > 0; body = body[sigSize:] {
			out = append(out, sigData{typ: typ, data: body[:sigSize]})
		}
		b = b[listSize:]
	}
	return out, nil
}

// VariableData encodes a UEFI_VARIABLE_DATA (TCG PC Client PFP, 10.4.4):
// the vendor GUID, the name's length in characters (UINT64), the data's
// length (UINT64), the UTF-16LE name without NUL, the data.
func VariableData(guid, name string, data []byte) []byte {
	g, err := guidBytes(guid)
	if err != nil {
		panic(err) // GUIDs are constants of this package
	}
	n := utf16z(name)
	n = n[:len(n)-2]
	var b bytes.Buffer
	b.Write(g)
	binary.Write(&b, binary.LittleEndian, uint64(len(n)/2))
	binary.Write(&b, binary.LittleEndian, uint64(len(data)))
	b.Write(n)
	b.Write(data)
	return b.Bytes()
}

// ReadSecureBootVars reads the variable files of dir (PKFile, KEKFile,
// DBFile, optional DBXFile).
func ReadSecureBootVars(dir string) (SecureBootVars, error) {
	var v SecureBootVars
	for _, f := range []struct {
		name     string
		dst      *[]byte
		optional bool
	}{{PKFile, &v.PK, false}, {KEKFile, &v.KEK, false}, {DBFile, &v.DB, false}, {DBXFile, &v.DBX, true}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) && f.optional {
			continue
		}
		if err != nil {
			return v, fmt.Errorf("predict: Secure Boot variables: %w", err)
		}
		*f.dst = b
	}
	return v, nil
}

// guidBytes encodes a GUID string in EFI's byte order: the first three
// fields little endian, the last two as written.
func guidBytes(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || len(s) != 36 {
		return nil, fmt.Errorf("GUID %q: want 8-4-4-4-12 hex digits", s)
	}
	slices.Reverse(b[0:4])
	slices.Reverse(b[4:6])
	slices.Reverse(b[6:8])
	return b, nil
}

// guidString formats an EFI_GUID as 8-4-4-4-12.
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}
