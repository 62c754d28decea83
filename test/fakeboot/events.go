package fakeboot

import (
	"crypto/sha256"
	"encoding/binary"
)

// EFI variable GUIDs, in their in-memory (mixed-endian) byte order.
var (
	efiGlobalVariable = guid(0x8BE4DF61, 0x93CA, 0x11D2, [8]byte{0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C})
	efiImageSecurity  = guid(0xD719B2CB, 0x3D3A, 0x4596, [8]byte{0xA3, 0xBC, 0xDA, 0xD0, 0x0E, 0x67, 0x65, 0x6F})
	shimLock          = guid(0x605DAB50, 0xE046, 0x4300, [8]byte{0xAB, 0xB6, 0x3D, 0xD8, 0x10, 0xDD, 0x8B, 0x23})
)

// events lists the measured events of s in log order.
func events(s Spec) []Event {
	var ev []Event
	add := func(pcr int, typ uint32, data []byte) {
		ev = append(ev, Event{PCR: pcr, Type: typ, Digest: sum(data), Data: data})
	}
	addImage := func(pcr int, typ uint32, image []byte, path string) {
		d := sha256.Sum256(image)
		ev = append(ev, Event{PCR: pcr, Type: typ, Digest: d[:], Data: imageLoadEvent(len(image), path)})
	}

	// Firmware: version string and two firmware volumes, digests derived
	// from the version so a firmware change changes PCR 0.
	add(0, EvSCRTMVersion, utf16z(s.Firmware))
	for i, name := range []string{"PEIFV", "DXEFV"} {
		blob := make([]byte, 16)
		binary.LittleEndian.PutUint64(blob, 0xFFC00000+uint64(i)*0x100000)
		binary.LittleEndian.PutUint64(blob[8:], 0x100000)
		d := sha256.Sum256([]byte(name + "\x00" + s.Firmware))
		ev = append(ev, Event{PCR: 0, Type: EvEFIPlatformFirmwareBlob, Digest: d[:], Data: blob})
	}

	// Secure Boot configuration.
	sb := []byte{0}
	if s.SecureBoot {
		sb = []byte{1}
	}
	add(7, EvEFIVariableDriverConfig, variableData(efiGlobalVariable, "SecureBoot", sb))
	for _, name := range []string{"PK", "KEK"} {
		add(7, EvEFIVariableDriverConfig, variableData(efiGlobalVariable, name, nil))
	}
	add(7, EvEFIVariableDriverConfig, variableData(efiImageSecurity, "db", s.DB))
	add(7, EvEFIVariableDriverConfig, variableData(efiImageSecurity, "dbx", nil))

	// Boot variables.
	add(1, EvEFIVariableBoot, variableData(efiGlobalVariable, "BootOrder", []byte{1, 0, 0, 0}))
	add(1, EvEFIVariableBoot, variableData(efiGlobalVariable, "Boot0001", loadOption(s.BootEntry)))

	if s.OptionROM != nil {
		addImage(2, EvEFIBootServicesDriver, s.OptionROM, "")
	}

	add(4, EvEFIAction, []byte("Calling EFI Application from Boot Option"))
	for pcr := range 8 {
		add(pcr, EvSeparator, []byte{0, 0, 0, 0})
	}

	add(14, EvIPL, append([]byte("MokList\x00"), s.MokList...))
	add(14, EvIPL, []byte("MokListX\x00"))

	if s.Authority != nil {
		add(7, EvEFIVariableAuthority, variableData(efiImageSecurity, "db", s.Authority))
	}
	if s.Loader != nil {
		addImage(4, EvEFIBootServicesApplication, s.Loader, `\ipxe.efi`)
	}
	addImage(4, EvEFIBootServicesApplication, s.Kernel, `\vmlinuz.efi`)

	// UKI-style sections: name then content, as systemd-stub measures them.
	for _, sec := range []struct {
		name string
		data []byte
	}{{".linux", s.Kernel}, {".cmdline", []byte(s.Cmdline)}, {".initrd", s.Initrd}} {
		add(11, EvIPL, []byte(sec.name+"\x00"))
		d := sha256.Sum256(sec.data)
		ev = append(ev, Event{PCR: 11, Type: EvIPL, Digest: d[:], Data: []byte(sec.name + " contents")})
	}

	add(8, EvIPL, []byte("kernel_cmdline: "+s.Cmdline))

	// Linux EFI stub: load options then initrd, both as tagged events whose
	// digests cover the payload, not the event data.
	opts := utf16z(s.Cmdline)
	ev = append(ev, Event{PCR: 9, Type: EvEventTag, Digest: sum(opts), Data: taggedEvent(TagLoadOptions, []byte("LOADED_IMAGE::LoadOptions\x00"))})
	ev = append(ev, Event{PCR: 9, Type: EvEventTag, Digest: sum(s.Initrd), Data: taggedEvent(TagInitrd, []byte("Linux initrd\x00"))})

	add(5, EvEFIAction, []byte("Exit Boot Services Invocation"))
	add(5, EvEFIAction, []byte("Exit Boot Services Returned with Success"))
	return ev
}

func sum(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}
