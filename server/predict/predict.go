// Package predict computes, from the exact bytes sealroot serves, the TPM
// measurements a UEFI machine makes when it boots them: firmware loads iPXE
// (ipxe.efi over TFTP), iPXE loads the unified kernel image (uki.efi over
// HTTP) with a command line, and systemd-stub (252) boots the kernel inside
// it. Verified on OVMF 2022.11 + swtpm with Debian's iPXE (2019) and
// systemd-boot-efi 252:
//
//   - PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION, one event per image the
//     firmware loads, in order: the Authenticode SHA-256 of ipxe.efi, of
//     the UKI, then of the kernel (.linux section), which systemd-stub
//     loads through the firmware. When the NIC's own firmware is iPXE (an
//     option ROM, as under QEMU) it runs the script itself: no ipxe.efi
//     event, the UKI first (server/policy expects that).
//   - PCR 11, EV_IPL, two events per section systemd-stub finds, in its
//     fixed order .linux, .osrel, .cmdline, .initrd, .splash, .dtb,
//     .pcrpkey (.pcrsig is not measured): SHA-256 of the section name with
//     its NUL, then SHA-256 of the section's VirtualSize bytes in memory.
//   - PCR 12, EV_IPL: the command line the loader passed, which systemd-stub
//     uses instead of .cmdline when Secure Boot is off. iPXE passes the
//     image name, a space and the script's arguments, so the measured text
//     is "uki.efi console=ttyS0 ..." as UTF-16LE with its terminating NUL.
//     Without arguments it is the image name alone. (With Secure Boot on,
//     systemd-stub ignores it and measures nothing into PCR 12; Debian's
//     iPXE is unsigned, so that case does not arise with it; it does
//     with firmware HTTP boot or a signed iPXE.)
//   - With Secure Boot on (Artifacts.SecureBoot; verified on the same
//     OVMF with the snakeoil keys): PCR 7 as PredictPCR7 says; PCR 4
//     holds the UKI but no event for the kernel, which systemd-stub
//     starts without the firmware's LoadImage; PCR 12 holds nothing.
//
// Predict is pure; Cache recomputes a prediction when the served files
// change.
package predict

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/sealroot/sealroot/uki"
)

// PCRs checked against predictions.
const (
	PCRBootApps      = 4
	PCRKernelImage   = 11
	PCRKernelCommand = 12
)

// ErrArtifacts means the artifacts cannot be predicted: a missing part or
// a UKI without a kernel.
var ErrArtifacts = errors.New("predict: unusable boot artifacts")

// Artifacts are the bytes served to a UEFI machine and the names iPXE
// gives them.
type Artifacts struct {
	IPXE []byte // the EFI iPXE binary the firmware loads
	UKI  []byte // the unified kernel image the iPXE script boots
	// UKIName is the image name iPXE prepends to the command line: the
	// last path element of the UKI's URL ("uki.efi").
	UKIName string
	// Cmdline is the command line on the script's kernel line.
	Cmdline string
	// SecureBoot, when set, are the Secure Boot variables the machines'
	// firmware holds (Secure Boot on), and Signers the certificates that
	// signed the images it verifies (the owner certificate): PCR 7 is
	// predicted, and PCR 12 holds nothing (systemd-stub ignores the
	// loader's command line with Secure Boot on).
	SecureBoot *SecureBootVars
	Signers    []*x509.Certificate
}

// Event is one predicted event: what it measures, and its sha256 digest.
type Event struct {
	Name   string `json:"name"`
	Digest []byte `json:"digest"`
}

// Prediction is what a machine booting the artifacts must measure.
type Prediction struct {
	// BootApps are PCR 4's EV_EFI_BOOT_SERVICES_APPLICATION digests, in
	// load order: iPXE, the UKI, the kernel (not with Secure Boot on).
	BootApps []Event `json:"boot_apps"`
	// KernelImage are PCR 11's events, in order; PCR11 is their result.
	KernelImage []Event `json:"kernel_image"`
	PCR11       []byte  `json:"pcr11"`
	// Cmdline is PCR 12's one event; PCR12 is its result.
	Cmdline Event  `json:"cmdline"`
	PCR12   []byte `json:"pcr12"`
	// SecureBoot is PCR 7, when Artifacts.SecureBoot was given.
	SecureBoot *SecureBootPrediction `json:"secure_boot,omitempty"`
}

// measuredSections is systemd-stub 252's measurement order (its
// UnifiedSection enum without .pcrsig, which is not measured).
var measuredSections = []string{".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"}

// maxSectionSize bounds a section's in-memory size: zeros past the raw
// data are hashed, so an absurd VirtualSize would cost time.
const maxSectionSize = 1 << 30

// Predict returns the measurements booting a makes.
func Predict(a Artifacts) (*Prediction, error) {
	if len(a.IPXE) == 0 || len(a.UKI) == 0 || a.UKIName == "" {
		return nil, fmt.Errorf("%w: iPXE, UKI and the UKI's name are required", ErrArtifacts)
	}
	ipxe, err := uki.Authenticode(a.IPXE)
	if err != nil {
		return nil, fmt.Errorf("predict: iPXE: %w", err)
	}
	image, err := uki.Authenticode(a.UKI)
	if err != nil {
		return nil, fmt.Errorf("predict: UKI: %w", err)
	}
	secs, err := uki.Sections(a.UKI)
	if err != nil {
		return nil, fmt.Errorf("predict: UKI: %w", err)
	}
	byName := map[string]uki.Section{}
	for _, s := range secs {
		if _, dup := byName[s.Name]; !dup { // the stub takes the first
			byName[s.Name] = s
		}
	}
	linux, ok := byName[uki.SectionLinux]
	if !ok {
		return nil, fmt.Errorf("%w: UKI has no %s section", ErrArtifacts, uki.SectionLinux)
	}
	if linux.VirtualSize != uint32(len(linux.Data)) {
		return nil, fmt.Errorf("%w: %s section is not stored whole", ErrArtifacts, uki.SectionLinux)
	}
	kernel, err := uki.Authenticode(linux.Data)
	if err != nil {
		return nil, fmt.Errorf("predict: kernel in the UKI: %w", err)
	}
	p := &Prediction{BootApps: []Event{
		{Name: "ipxe.efi", Digest: ipxe[:]},
		{Name: a.UKIName, Digest: image[:]},
		{Name: a.UKIName + " " + uki.SectionLinux, Digest: kernel[:]},
	}}
	for _, name := range measuredSections {
		s, ok := byName[name]
		if !ok {
			continue
		}
		if s.VirtualSize > maxSectionSize {
			return nil, fmt.Errorf("%w: section %s of %d bytes", ErrArtifacts, name, s.VirtualSize)
		}
		p.KernelImage = append(p.KernelImage,
			Event{Name: name + " name", Digest: sum([]byte(name + "\x00"))},
			Event{Name: name, Digest: sectionDigest(s)})
	}
	p.PCR11 = Replay(p.KernelImage)
	if a.SecureBoot != nil {
		if p.SecureBoot, err = PredictPCR7(*a.SecureBoot, a.Signers); err != nil {
			return nil, err
		}
		// With Secure Boot on, systemd-stub 252 starts the kernel
		// without the firmware's LoadImage: no PCR 4 event for it (the
		// UKI's digest and PCR 11's .linux cover it).
		p.BootApps = p.BootApps[:2]
		p.Cmdline = Event{Name: NoCmdline}
		p.PCR12 = Replay(nil)
		return p, nil
	}
	text := LoadOptions(a.UKIName, a.Cmdline)
	p.Cmdline = Event{Name: text, Digest: sum(utf16z(text))}
	p.PCR12 = Replay([]Event{p.Cmdline})
	return p, nil
}

// NoCmdline names the PCR 12 event of a Secure Boot prediction: none,
// PCR 12 stays zero.
const NoCmdline = "(none: with Secure Boot on systemd-stub ignores the loader's command line)"

// LoadOptions is the command line iPXE passes to an image it boots: its
// name, then a space and the arguments if there are any.
func LoadOptions(imageName, args string) string {
	if args = strings.TrimSpace(args); args != "" {
		return imageName + " " + args
	}
	return imageName
}

// Replay returns the sha256 PCR value events extend from zero.
func Replay(events []Event) []byte {
	pcr := make([]byte, sha256.Size)
	for _, e := range events {
		h := sha256.New()
		h.Write(pcr)
		h.Write(e.Digest)
		pcr = h.Sum(pcr[:0])
	}
	return pcr
}

// sectionDigest hashes a section as loaded: its data, then zeros up to
// VirtualSize.
func sectionDigest(s uki.Section) []byte {
	h := sha256.New()
	h.Write(s.Data)
	zeros := make([]byte, 4096)
	for n := int64(s.VirtualSize) - int64(len(s.Data)); n > 0; n -= int64(len(zeros)) {
		h.Write(zeros[:min(n, int64(len(zeros)))])
	}
	return h.Sum(nil)
}

// utf16z encodes s as UTF-16LE with a terminating NUL, as EFI passes
// LoadOptions.
func utf16z(s string) []byte {
	u := utf16.Encode([]rune(s + "\x00"))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	return b
}

func sum(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}
