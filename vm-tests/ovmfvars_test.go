package vmtest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/sealroot/sealroot/test/testenv"
)

// buildVarStore returns a variable store image holding vars, each with
// its state byte (varAdded for live ones), as EDK2 lays it out.
func buildVarStore(t *testing.T, states []byte, vars []OVMFVar) []byte {
	t.Helper()
	const size = 4096
	img := make([]byte, size)
	copy(img[fvSignatureOffset:], "_FVH")
	const vs = 72
	binary.LittleEndian.PutUint16(img[fvHeaderLengthOffset:], vs)
	copy(img[vs:], guidBytes(t, authVarStoreGUID))
	binary.LittleEndian.PutUint32(img[vs+16:], size-vs)
	img[vs+20], img[vs+21] = varStoreFormatted, 0xfe
	off := vs + varStoreHeaderSize
	for i, v := range vars {
		name := utf16.Encode([]rune(v.Name + "\x00"))
		h := img[off : off+authVarHeaderSize]
		binary.LittleEndian.PutUint16(h, varStartID)
		h[2] = states[i]
		binary.LittleEndian.PutUint32(h[4:], v.Attributes)
		binary.LittleEndian.PutUint32(h[36:], uint32(2*len(name)))
		binary.LittleEndian.PutUint32(h[40:], uint32(len(v.Data)))
		copy(h[44:], guidBytes(t, v.GUID))
		off += authVarHeaderSize
		for _, c := range name {
			binary.LittleEndian.PutUint16(img[off:], c)
			off += 2
		}
		off += copy(img[off:], v.Data)
		off = (off + 3) &^ 3
	}
	for i := off; i < size; i++ {
		img[i] = 0xff // erased flash
	}
	return img
}

func guidBytes(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		t.Fatalf("bad GUID %q", s)
	}
	binary.LittleEndian.PutUint32(b, binary.BigEndian.Uint32(b))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(b[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(b[6:]))
	return b
}

const globalVariableGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

func TestSetOVMFVar(t *testing.T) {
	vars := []OVMFVar{
		{GUID: GUIDSecureBootEnableDisable, Name: "SecureBootEnable", Attributes: 3, Data: []byte{1}},
		{GUID: globalVariableGUID, Name: "Timeout", Attributes: 7, Data: []byte{5, 0}},
		{GUID: GUIDSecureBootEnableDisable, Name: "SecureBootEnable", Attributes: 3, Data: []byte{1}},
	}
	// The first copy is deleted (VAR_ADDED & VAR_DELETED): only the
	// second counts.
	img := buildVarStore(t, []byte{0x3d, varAdded, varAdded}, vars)
	got, err := ReadOVMFVars(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "Timeout" || got[1].Name != "SecureBootEnable" || got[1].GUID != GUIDSecureBootEnableDisable {
		t.Fatalf("ReadOVMFVars = %+v, want Timeout then the live SecureBootEnable", got)
	}
	path := filepath.Join(t.TempDir(), "vars.fd")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetOVMFVar(path, GUIDSecureBootEnableDisable, "SecureBootEnable", []byte{0}); err != nil {
		t.Fatal(err)
	}
	edited, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err = ReadOVMFVars(edited)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[1].Data, []byte{0}) || !bytes.Equal(got[0].Data, []byte{5, 0}) {
		t.Errorf("after SetOVMFVar: %+v, want SecureBootEnable 0 and Timeout unchanged", got)
	}
	if diff := countDiff(img, edited); diff != 1 {
		t.Errorf("SetOVMFVar changed %d bytes, want 1", diff)
	}
}

func TestSetOVMFVarErrors(t *testing.T) {
	img := buildVarStore(t, []byte{varAdded}, []OVMFVar{{GUID: globalVariableGUID, Name: "Timeout", Attributes: 7, Data: []byte{5, 0}}})
	path := filepath.Join(t.TempDir(), "vars.fd")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, guid, varName string
		data                []byte
		want                string
	}{
		{"other_size", globalVariableGUID, "Timeout", []byte{1}, "is 2 bytes, not 1"},
		{"other_guid", GUIDSecureBootEnableDisable, "Timeout", []byte{1, 0}, "no variable"},
		{"missing", globalVariableGUID, "BootOrder", []byte{1, 0}, "no variable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := SetOVMFVar(path, tc.guid, tc.varName, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SetOVMFVar = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := ReadOVMFVars(make([]byte, 4096)); err == nil {
		t.Error("ReadOVMFVars(zeros) = nil error, want no firmware volume header")
	}
}

// TestDebianMSVars reads the package's enrolled-keys template: the keys
// and the Secure Boot switch the firmware_change boot turns off.
func TestDebianMSVars(t *testing.T) {
	img, err := os.ReadFile(OVMFVarsMS)
	if os.IsNotExist(err) {
		testenv.Unavailable(t, "%s: not installed", OVMFVarsMS)
	}
	if err != nil {
		t.Fatal(err)
	}
	vars, err := ReadOVMFVars(img)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string][]byte{}
	for _, v := range vars {
		live[v.Name] = v.Data
	}
	for _, name := range []string{"PK", "KEK", "db", "dbx"} {
		if len(live[name]) == 0 {
			t.Errorf("%s: no %s", OVMFVarsMS, name)
		}
	}
	if !bytes.Equal(live["SecureBootEnable"], []byte{1}) {
		t.Errorf("%s: SecureBootEnable = %x, want 01", OVMFVarsMS, live["SecureBootEnable"])
	}
}

func countDiff(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestAddOVMFVar adds shim's MokList (NV+BS, no RT: shim deletes a
// MokList with runtime access) to Debian's Microsoft varstore: it reads
// back with its attributes and data after every variable there was, and a
// second add is refused.
func TestAddOVMFVar(t *testing.T) {
	orig, err := os.ReadFile(OVMFVarsMS)
	if os.IsNotExist(err) {
		testenv.Unavailable(t, "%s: not installed", OVMFVarsMS)
	}
	path := filepath.Join(t.TempDir(), "vars.fd")
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	data := []byte("signature list")
	if err := AddOVMFVar(path, GUIDShimLock, "MokList", MokListAttributes, data); err != nil {
		t.Fatal(err)
	}
	img, _ := os.ReadFile(path)
	before, _ := ReadOVMFVars(orig)
	after, err := ReadOVMFVars(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("%d variables after adding one to %d", len(after), len(before))
	}
	got := after[len(after)-1]
	if got.GUID != GUIDShimLock || got.Name != "MokList" || got.Attributes != MokListAttributes || !bytes.Equal(got.Data, data) {
		t.Errorf("added %s-%s attrs %#x data %q", got.GUID, got.Name, got.Attributes, got.Data)
	}
	if err := AddOVMFVar(path, GUIDShimLock, "MokList", MokListAttributes, data); err == nil {
		t.Error("a second MokList was added")
	}
}
