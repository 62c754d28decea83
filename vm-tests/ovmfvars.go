package vmtest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf16"
)

// OVMF variable store templates with keys enrolled (Debian package ovmf):
// distribution PK and KEK, Microsoft KEK and db; Secure Boot enabled.
const OVMFVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"

// GUIDs of EFI variables the tests edit.
const (
	// GUIDSecureBootEnableDisable owns SecureBootEnable, the setup
	// switch (1 on, 0 off) that EDK2's AuthVariableLib reads at start:
	// with a PK enrolled and SecureBootEnable 0, SecureBoot is 0 and
	// unsigned images load. (EDK2 SecurityPkg.dec,
	// gEfiSecureBootEnableDisableGuid.)
	GUIDSecureBootEnableDisable = "f0a30bc7-af08-4556-99c4-001009c93a44"
)

// Variable store layout (EDK2 MdePkg Pi/PiFirmwareVolume.h,
// MdeModulePkg Guid/VariableFormat.h): a firmware volume header, a
// VARIABLE_STORE_HEADER, then variables, each an AUTHENTICATED_VARIABLE_HEADER
// followed by the UTF-16 name and the data, each header 4-byte aligned.
const (
	fvSignatureOffset    = 40
	fvHeaderLengthOffset = 48
	varStoreHeaderSize   = 28
	authVarHeaderSize    = 60
	varStartID           = 0x55aa
	varAdded             = 0x3f // VAR_ADDED
	varAddedInDeletion   = 0x3e // VAR_ADDED & VAR_IN_DELETED_TRANSITION
	varStoreFormatted    = 0x5a
)

// authVarStoreGUID is gEfiAuthenticatedVariableGuid, the signature of a
// store of authenticated variable headers (OVMF's).
const authVarStoreGUID = "aaf32c78-947b-439a-a180-2e144ec37792"

// OVMFVar is a live variable of an OVMF variable store.
type OVMFVar struct {
	GUID       string // vendor GUID, lowercase 8-4-4-4-12
	Name       string
	Attributes uint32
	Data       []byte
	dataOff    int // offset of Data in the image
}

// ReadOVMFVars parses an OVMF variable store image (OVMF_VARS*.fd) and
// returns its live variables in store order; deleted versions are left
// out.
func ReadOVMFVars(img []byte) ([]OVMFVar, error) {
	if len(img) < fvHeaderLengthOffset+2 || string(img[fvSignatureOffset:fvSignatureOffset+4]) != "_FVH" {
		return nil, errors.New("ovmf vars: no firmware volume header")
	}
	vs := int(binary.LittleEndian.Uint16(img[fvHeaderLengthOffset:]))
	if vs+varStoreHeaderSize > len(img) {
		return nil, fmt.Errorf("ovmf vars: store header at %d beyond the image", vs)
	}
	if g := guidString(img[vs:]); g != authVarStoreGUID {
		return nil, fmt.Errorf("ovmf vars: store signature %s, want authenticated variables %s", g, authVarStoreGUID)
	}
	if img[vs+20] != varStoreFormatted {
		return nil, errors.New("ovmf vars: store not formatted")
	}
	end := vs + int(binary.LittleEndian.Uint32(img[vs+16:]))
	if end > len(img) {
		return nil, fmt.Errorf("ovmf vars: store size %d beyond the image", end-vs)
	}
	var vars []OVMFVar
	for off := vs + varStoreHeaderSize; off+authVarHeaderSize <= end; {
		h := img[off : off+authVarHeaderSize]
		if binary.LittleEndian.Uint16(h) != varStartID {
			break // the free space
		}
		nameSize := int(binary.LittleEndian.Uint32(h[36:]))
		dataSize := int(binary.LittleEndian.Uint32(h[40:]))
		nameOff := off + authVarHeaderSize
		dataOff := nameOff + nameSize
		if nameSize < 0 || dataSize < 0 || dataOff+dataSize > end {
			return nil, fmt.Errorf("ovmf vars: variable at %d overruns the store", off)
		}
		if st := h[2]; st == varAdded || st == varAddedInDeletion {
			vars = append(vars, OVMFVar{
				GUID:       guidString(h[44:]),
				Name:       utf16String(img[nameOff:dataOff]),
				Attributes: binary.LittleEndian.Uint32(h[4:]),
				Data:       bytes.Clone(img[dataOff : dataOff+dataSize]),
				dataOff:    dataOff,
			})
		}
		off = (dataOff + dataSize + 3) &^ 3
	}
	return vars, nil
}

// SetOVMFVar overwrites, in the variable store image at path, the data of
// the live variable guid/name with data of the same size: enough to flip a
// setting the firmware reads at start, as its setup menu would.
func SetOVMFVar(path, guid, name string, data []byte) error {
	img, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	vars, err := ReadOVMFVars(img)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var found *OVMFVar
	for i := range vars {
		if vars[i].GUID == strings.ToLower(guid) && vars[i].Name == name {
			found = &vars[i] // the last live copy wins
		}
	}
	switch {
	case found == nil:
		return fmt.Errorf("%s: no variable %s-%s", path, guid, name)
	case len(found.Data) != len(data):
		return fmt.Errorf("%s: variable %s is %d bytes, not %d", path, name, len(found.Data), len(data))
	}
	copy(img[found.dataOff:], data)
	return os.WriteFile(path, img, 0o644)
}

// AddOVMFVar appends, in the free space of the variable store image at
// path, a new variable guid/name with attrs and data (no authentication
// fields: for variables that are not time-based authenticated, such as
// shim's MokList). The store must not hold a live guid/name already.
func AddOVMFVar(path, guid, name string, attrs uint32, data []byte) error {
	img, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	vars, err := ReadOVMFVars(img)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, v := range vars {
		if v.GUID == strings.ToLower(guid) && v.Name == name {
			return fmt.Errorf("%s: variable %s exists", path, name)
		}
	}
	vs := int(binary.LittleEndian.Uint16(img[fvHeaderLengthOffset:]))
	end := vs + int(binary.LittleEndian.Uint32(img[vs+16:]))
	off := vs + varStoreHeaderSize
	for off+authVarHeaderSize <= end && binary.LittleEndian.Uint16(img[off:]) == varStartID {
		nameSize := int(binary.LittleEndian.Uint32(img[off+36:]))
		dataSize := int(binary.LittleEndian.Uint32(img[off+40:]))
		off = (off + authVarHeaderSize + nameSize + dataSize + 3) &^ 3
	}
	u := utf16.Encode([]rune(name + "\x00"))
	nameBytes := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(nameBytes[2*i:], c)
	}
	size := authVarHeaderSize + len(nameBytes) + len(data)
	if off+size > end {
		return fmt.Errorf("%s: no room for %d bytes of variable %s", path, size, name)
	}
	for _, b := range img[off : off+size] {
		if b != 0xff {
			return fmt.Errorf("%s: free space at %d is not erased", path, off)
		}
	}
	g, err := guidBytesLE(guid)
	if err != nil {
		return err
	}
	h := make([]byte, authVarHeaderSize) // monotonic count, timestamp, key index: zero
	binary.LittleEndian.PutUint16(h, varStartID)
	h[2] = varAdded
	binary.LittleEndian.PutUint32(h[4:], attrs)
	binary.LittleEndian.PutUint32(h[36:], uint32(len(nameBytes)))
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	copy(h[44:], g)
	copy(img[off:], h)
	copy(img[off+authVarHeaderSize:], nameBytes)
	copy(img[off+authVarHeaderSize+len(nameBytes):], data)
	return os.WriteFile(path, img, 0o644)
}

// guidBytesLE encodes an 8-4-4-4-12 GUID in EFI's mixed-endian layout.
func guidBytesLE(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("GUID %q: want 8-4-4-4-12 hex digits", s)
	}
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	return b, nil
}

// guidString formats an EFI_GUID (mixed endian) as 8-4-4-4-12.
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%s-%s", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), hex.EncodeToString(b[8:10]), hex.EncodeToString(b[10:16]))
}

// utf16String decodes a NUL-terminated UTF-16LE name.
func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// Shim's variables (shim's shim.h, mok.c).
const (
	// GUIDShimLock owns MokList (SHIM_LOCK_GUID).
	GUIDShimLock = "605dab50-e046-4300-abb6-3dd810dd8b23"
	// MokListAttributes are what shim requires of MokList: non-volatile,
	// boot-service access, and no runtime access (mok.c
	// mok_state_variables: yes_attr NV|BS, no_attr RT; otherwise shim
	// deletes it as compromised).
	MokListAttributes = 0x1 | 0x2
)
