package eventlog

import (
	"encoding/binary"
	"strings"
	"unicode/utf16"
)

// MaxDescription is the longest description Describe returns, in runes.
const MaxDescription = 80

// Event types whose data Describe decodes (TCG PC Client PFP, 10.4.1).
const (
	evEventTag                   = 0x00000006
	evEFIVariableDriverConfig    = 0x80000001
	evEFIVariableBoot            = 0x80000002
	evEFIBootServicesApplication = 0x80000003
	evEFIBootServicesDriver      = 0x80000004
	evEFIRuntimeServicesDriver   = 0x80000005
	evEFIVariableAuthority       = 0x800000E0
	evEFIVariableBoot2           = 0x8000000C
	evSCRTMVersion               = 0x00000008
)

// Describe returns a short printable description of an event's data: the
// variable name of EFI variable events, the file path of image loads, the
// text of tagged events, or the printable prefix of anything else. It is
// for operators reading diffs; nothing is decided on it.
func Describe(typ uint32, data []byte) string {
	var s string
	switch typ {
	case evEFIVariableDriverConfig, evEFIVariableBoot, evEFIVariableBoot2, evEFIVariableAuthority:
		s = variableName(data)
	case evEFIBootServicesApplication, evEFIBootServicesDriver, evEFIRuntimeServicesDriver:
		s = imagePath(data)
	case evEventTag:
		if len(data) >= 8 && int(binary.LittleEndian.Uint32(data[4:8])) == len(data)-8 {
			data = data[8:]
		}
	case evSCRTMVersion:
		s = utf16Text(data)
	}
	if s == "" {
		s = printable(data)
	}
	return clean(s)
}

// variableName decodes the name of a UEFI_VARIABLE_DATA.
func variableName(data []byte) string {
	if len(data) < 32 {
		return ""
	}
	n := binary.LittleEndian.Uint64(data[16:24])
	if n > uint64(len(data)-32)/2 {
		return ""
	}
	return utf16Text(data[32 : 32+2*n])
}

// imagePath decodes the file-path nodes of a UEFI_IMAGE_LOAD_EVENT's
// device path.
func imagePath(data []byte) string {
	if len(data) < 32 {
		return ""
	}
	n := binary.LittleEndian.Uint64(data[24:32])
	if n > uint64(len(data)-32) {
		return ""
	}
	dp := data[32 : 32+n]
	var parts []string
	for len(dp) >= 4 {
		l := int(binary.LittleEndian.Uint16(dp[2:4]))
		if l < 4 || l > len(dp) {
			break
		}
		if dp[0] == 0x04 && dp[1] == 0x04 { // media device path, file path
			parts = append(parts, utf16Text(dp[4:l]))
		}
		dp = dp[l:]
	}
	return strings.Join(parts, "/")
}

// utf16Text decodes UTF-16LE up to the first NUL, or "" if data does not
// look like UTF-16 text.
func utf16Text(data []byte) string {
	u := make([]uint16, 0, len(data)/2)
	for i := 0; i+1 < len(data); i += 2 {
		c := binary.LittleEndian.Uint16(data[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
		if len(u) > 4*MaxDescription {
			break
		}
	}
	return string(utf16.Decode(u))
}

// printable renders data as text: UTF-16LE if it looks like it, else bytes
// up to the first NUL.
func printable(data []byte) string {
	if len(data) >= 4 && data[1] == 0 && data[3] == 0 && data[0] != 0 {
		return utf16Text(data)
	}
	if i := strings.IndexByte(string(data), 0); i >= 0 {
		data = data[:i]
	}
	if len(data) > 4*MaxDescription {
		data = data[:4*MaxDescription]
	}
	return string(data)
}

// clean replaces non-printable runes with '.' and truncates to
// MaxDescription runes, marking truncation with "…". Mostly binary input
// gives "".
func clean(s string) string {
	var b strings.Builder
	n, bad := 0, 0
	for _, r := range s {
		if n == MaxDescription {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7F || r == 0xFFFD || (r >= 0x80 && r < 0xA0) {
			r = '.'
			bad++
		}
		b.WriteRune(r)
		n++
	}
	if bad*4 > n {
		return "" // binary data, nothing readable
	}
	return b.String()
}
