package eventlog

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/sealroot/sealroot/wire"
)

// SecureBootState is what the verified PCR 7 events of a log prove about
// UEFI Secure Boot (TCG PC Client PFP, 3.3.4.8 and 10.4.4).
type SecureBootState struct {
	// Enabled is the value of the SecureBoot variable the firmware
	// measured (EV_EFI_VARIABLE_DRIVER_CONFIG): true for 1. A log without
	// that event (legacy BIOS) is not enabled.
	Enabled bool
	// Authorities are the db certificates that verified loaded images
	// (EV_EFI_VARIABLE_AUTHORITY after the PCR 7 separator, one per
	// distinct signer), in log order: their subjects, or "hash" for a db
	// entry that is an image hash.
	Authorities []string
}

// ErrNoPCR7 means the quote does not cover PCR 7, so the log proves
// nothing about Secure Boot.
var ErrNoPCR7 = errors.New("PCR 7 (Secure Boot policy) is not quoted")

// efiGlobalVariable is EFI_GLOBAL_VARIABLE, 8be4df61-93ca-11d2-aa0d-00e098032b8c,
// in its little-endian in-memory form.
var efiGlobalVariable = []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}

// SecureBoot replays raw against pcrs, as Verify does, and returns the
// Secure Boot state its PCR 7 events prove. Only events whose digest is
// the SHA-256 of their data are read, so a rewritten log cannot change
// the result without failing the replay.
func SecureBoot(raw []byte, pcrs []wire.PCR) (*SecureBootState, error) {
	if !slices.ContainsFunc(pcrs, func(p wire.PCR) bool { return p.Index == 7 }) {
		return nil, ErrNoPCR7
	}
	if len(raw) > MaxLogSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrMalformed, len(raw), MaxLogSize)
	}
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	_, verified, err := replay(raw, pcrs)
	if err != nil {
		return nil, err
	}
	var st SecureBootState
	for _, e := range verified {
		if e.Index != 7 {
			continue
		}
		typ := uint32(e.Type)
		if typ != evEFIVariableDriverConfig && typ != evEFIVariableAuthority {
			continue
		}
		sum := sha256.Sum256(e.Data)
		if !bytes.Equal(sum[:], e.Digest) {
			return nil, fmt.Errorf("%w: PCR 7 %s", ErrEventData, Describe(typ, e.Data))
		}
		guid, name, value, ok := parseVariableData(e.Data)
		if !ok {
			return nil, fmt.Errorf("%w: PCR 7 variable event data", ErrMalformed)
		}
		switch {
		case typ == evEFIVariableDriverConfig && name == "SecureBoot" && bytes.Equal(guid, efiGlobalVariable):
			if len(value) != 1 || value[0] > 1 {
				return nil, fmt.Errorf("%w: SecureBoot variable value %x", ErrMalformed, value)
			}
			st.Enabled = value[0] == 1
		case typ == evEFIVariableAuthority:
			st.Authorities = append(st.Authorities, authority(value))
		}
	}
	return &st, nil
}

// parseVariableData splits a UEFI_VARIABLE_DATA: vendor GUID, name length
// (UINT64, characters), data length (UINT64), UTF-16 name, data.
func parseVariableData(d []byte) (guid []byte, name string, value []byte, ok bool) {
	if len(d) < 32 {
		return nil, "", nil, false
	}
	n, m := binary.LittleEndian.Uint64(d[16:24]), binary.LittleEndian.Uint64(d[24:32])
	rest := uint64(len(d) - 32)
	if n > rest/2 || m != rest-2*n {
		return nil, "", nil, false
	}
	return d[:16], utf16Text(d[32 : 32+2*n]), d[32+2*n:], true
}

// authority names the db entry of an authority event: an
// EFI_SIGNATURE_DATA (owner GUID, then an X.509 certificate or a hash).
func authority(sigData []byte) string {
	if len(sigData) > 16 {
		if c, err := x509.ParseCertificate(sigData[16:]); err == nil {
			return clean(c.Subject.String())
		}
	}
	return "hash"
}
