// Package fakeboot generates a synthetic UEFI measured boot for tests and
// benchmarks: a TCG2 crypto-agile event log (sha256 bank only) and the PCR
// extends that a firmware writing that log would have issued.
//
// The log starts with a TCG_PCR_EVENT carrying the "Spec ID Event03" header,
// followed by TCG_PCR_EVENT2 entries shaped like an OVMF + iPXE + EFI-stub (or
// UKI) boot, with at least one event in each of PCRs 0-9, 11 and 14:
//
//	PCR 0     EV_S_CRTM_VERSION, EV_EFI_PLATFORM_FIRMWARE_BLOB   (Spec.Firmware)
//	PCR 1     EV_EFI_VARIABLE_BOOT BootOrder, Boot0001            (Spec.BootEntry)
//	PCR 2     EV_EFI_BOOT_SERVICES_DRIVER                         (Spec.OptionROM, optional)
//	PCR 4     EV_EFI_ACTION "Calling EFI Application from Boot Option",
//	          EV_EFI_BOOT_SERVICES_APPLICATION                    (Spec.Loader, Spec.Kernel)
//	PCR 5     EV_EFI_ACTION Exit Boot Services
//	PCR 7     EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot, PK, ...   (Spec.SecureBoot, DB; Authority after the separator)
//	PCR 0-7   EV_SEPARATOR
//	PCR 8     EV_IPL kernel command line                          (Spec.Cmdline)
//	PCR 9     EV_EVENT_TAG LoadOptions, initrd                    (Spec.Cmdline, Spec.Initrd)
//	PCR 11    EV_IPL UKI section names and contents               (Spec.Kernel, Spec.Cmdline, Spec.Initrd)
//	PCR 14    EV_IPL MokList, MokListX                            (Spec.MokList)
//
// Image digests are plain SHA-256 of the bytes given, standing in for the
// Authenticode digest real firmware measures.
package fakeboot

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/wire"
)

// TCG event types used here (TCG PC Client Platform Firmware Profile, 10.4.1).
const (
	EvNoAction                   uint32 = 0x00000003
	EvSeparator                  uint32 = 0x00000004
	EvEventTag                   uint32 = 0x00000006
	EvSCRTMVersion               uint32 = 0x00000008
	EvIPL                        uint32 = 0x0000000D
	EvEFIVariableDriverConfig    uint32 = 0x80000001
	EvEFIVariableAuthority       uint32 = 0x800000E0
	EvEFIVariableBoot            uint32 = 0x80000002
	EvEFIBootServicesApplication uint32 = 0x80000003
	EvEFIBootServicesDriver      uint32 = 0x80000004
	EvEFIAction                  uint32 = 0x80000007
	EvEFIPlatformFirmwareBlob    uint32 = 0x80000008
)

// Event tags of the Linux EFI stub (EV_EVENT_TAG taggedEventID).
const (
	TagLoadOptions uint32 = 0x8F3B22ED
	TagInitrd      uint32 = 0x8F3B22EC
)

// Spec describes the boot to synthesize. Each field changes the PCRs listed
// in the package documentation and nothing else.
type Spec struct {
	// Firmware is the firmware version string (PCR 0). Default "fakeboot 1.0".
	Firmware string
	// BootEntry is the description of the boot option (PCR 1).
	// Default "UEFI PXEv4".
	BootEntry string
	// SecureBoot is the SecureBoot variable (PCR 7).
	SecureBoot bool
	// DB is the content of the Secure Boot db variable (PCR 7), e.g. an
	// EFI_SIGNATURE_LIST of certificates; it makes logs realistically large.
	DB []byte
	// Authority, if not nil, is the EFI_SIGNATURE_DATA (owner GUID and
	// certificate) of the db entry that verified the loaded images, logged
	// in PCR 7 after the separator as firmware with Secure Boot on does.
	Authority []byte
	// OptionROM, if not nil, is measured as a driver into PCR 2.
	OptionROM []byte
	// Loader, if not nil, is the network boot program (iPXE) measured into
	// PCR 4 before the kernel.
	Loader []byte
	// Kernel is the kernel image (PCRs 4 and 11); required.
	Kernel []byte
	// Initrd is the initramfs (PCRs 9 and 11).
	Initrd []byte
	// Cmdline is the kernel command line (PCRs 8, 9 and 11).
	Cmdline string
	// MokList is the shim MokList variable content (PCR 14).
	MokList []byte
}

// Event is one entry of the generated log.
type Event struct {
	PCR    int
	Type   uint32
	Digest []byte // sha256; nil for EV_NO_ACTION
	Data   []byte
}

// Extend is one PCR extend: Digest is the event digest, extended as is.
type Extend struct {
	PCR    int
	Digest []byte
}

// Boot is a generated measured boot.
type Boot struct {
	// Log is the raw event log, as the kernel exports it in
	// /sys/kernel/security/tpm0/binary_bios_measurements.
	Log []byte
	// Events are the log's entries after the Spec ID header, in order.
	Events []Event
	// Extends are the PCR extends the log describes, in order.
	Extends []Extend
}

// Extender extends one sha256 PCR with a digest, without hashing it again.
type Extender interface {
	ExtendPCR(pcr int, digest []byte) error
}

// ErrNoKernel is returned by Build when Spec.Kernel is empty.
var ErrNoKernel = errors.New("fakeboot: spec has no kernel")

// Build generates the event log and extends for s.
func Build(s Spec) (*Boot, error) {
	if len(s.Kernel) == 0 {
		return nil, ErrNoKernel
	}
	if s.Firmware == "" {
		s.Firmware = "fakeboot 1.0"
	}
	if s.BootEntry == "" {
		s.BootEntry = "UEFI PXEv4"
	}
	b := &Boot{Log: specIDEvent()}
	b.add(Event{PCR: 0, Type: EvNoAction, Data: append([]byte("StartupLocality\x00"), 0)})
	for _, e := range events(s) {
		b.add(e)
	}
	return b, nil
}

// Encode returns a log holding the Spec ID header and events, in order. Tests
// use it to build logs with events dropped or altered.
func Encode(events []Event) []byte {
	b := specIDEvent()
	for _, e := range events {
		b = appendEvent2(b, e)
	}
	return b
}

func (b *Boot) add(e Event) {
	b.Events = append(b.Events, e)
	b.Log = appendEvent2(b.Log, e)
	if e.Type != EvNoAction {
		b.Extends = append(b.Extends, Extend{PCR: e.PCR, Digest: e.Digest})
	}
}

// Apply issues b's extends to e, in order.
func (b *Boot) Apply(e Extender) error {
	for i, x := range b.Extends {
		if err := e.ExtendPCR(x.PCR, x.Digest); err != nil {
			return fmt.Errorf("extend %d (PCR %d): %w", i, x.PCR, err)
		}
	}
	return nil
}

// PCRs returns the sha256 PCR values after b's extends, starting from zero,
// for every PCR in 0-23.
func (b *Boot) PCRs() map[int][]byte {
	pcrs := make(map[int][]byte, 24)
	for i := range 24 {
		pcrs[i] = make([]byte, sha256.Size)
	}
	for _, x := range b.Extends {
		h := sha256.New()
		h.Write(pcrs[x.PCR])
		h.Write(x.Digest)
		pcrs[x.PCR] = h.Sum(nil)
	}
	return pcrs
}

// Quoted returns b's PCR values for the given indices, in that order, as an
// agent would report them.
func (b *Boot) Quoted(indices ...int) []wire.PCR {
	all := b.PCRs()
	out := make([]wire.PCR, 0, len(indices))
	for _, i := range indices {
		out = append(out, wire.PCR{Index: i, Digest: all[i]})
	}
	return out
}
