// Package ipxe renders the iPXE scripts that sealroot's HTTP boot server
// hands to machines after firmware PXE has chained into iPXE.
//
// A script boots either a kernel plus initramfs (legacy BIOS, or EFI without
// a UKI) or a single Unified Kernel Image (EFI). It wraps the boot in a retry
// loop so that a machine whose download fails during a boot storm waits and
// tries again instead of falling back to the next firmware boot option.
//
// # No secrets
//
// Scripts and kernel command lines are served over plain HTTP to anyone who
// asks and are measured into PCRs, so they must carry nothing secret.
// [Render] refuses command-line keys that look like credentials
// ([ErrSecretInCmdline]). Per-machine secrets travel only over the
// attested channel, after the TPM quote has been checked.
//
// # Measurement
//
// On EFI, iPXE always passes a command line to the image and prepends the
// image name to it: booting "uki.efi" with "console=ttyS0" makes the kernel
// (and PCR 12 for a UKI, the LoadOptions event in PCR 9 for a kernel) see
// "uki.efi console=ttyS0". Keep artifact names and command lines static per
// image so that the server can predict the measurements.
//
// # Escaping
//
// iPXE expands ${settings}, splits on whitespace and treats "||" and "&&" as
// control flow, and has no reliable quoting in old builds. Rather than
// escaping, Render accepts only a conservative character set and rejects
// everything else with [ErrInvalidName], [ErrInvalidCmdline] or
// [ErrInvalidBaseURL]; a rendered script can therefore never contain a line
// that the template did not put there.
package ipxe

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Arch is a client firmware architecture, as used in the script URL
// (boot.ipxe?arch=...).
type Arch string

// Supported architectures.
const (
	ArchBIOS   Arch = "bios"    // legacy BIOS, iPXE undionly.kpxe
	ArchEFIx64 Arch = "efi-x64" // x86-64 UEFI, iPXE ipxe.efi
)

// ParseArch returns the Arch named s, or ErrInvalidArch.
func ParseArch(s string) (Arch, error) {
	switch a := Arch(s); a {
	case ArchBIOS, ArchEFIx64:
		return a, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidArch, truncate(s))
}

// Errors returned by Render, for errors.Is.
var (
	ErrInvalidArch     = errors.New("ipxe: unsupported architecture")
	ErrInvalidBaseURL  = errors.New("ipxe: invalid base URL")
	ErrInvalidName     = errors.New("ipxe: invalid artifact name")
	ErrInvalidCmdline  = errors.New("ipxe: invalid kernel command line")
	ErrSecretInCmdline = errors.New("ipxe: kernel command line must not carry secrets")
	ErrMissingArtifact = errors.New("ipxe: missing or conflicting boot artifacts")
)

// DefaultRetrySeconds is the pause before a failed boot is retried when
// Params.RetrySeconds is zero.
const DefaultRetrySeconds = 5

// Limits on input sizes.
const (
	maxNameLen    = 128
	maxURLLen     = 256
	maxCmdlineLen = 2048
	maxRetry      = 3600
)

// Params describes one boot script.
type Params struct {
	// BaseURL is where artifacts are fetched from, e.g.
	// "http://192.0.2.1:8080/artifacts". Artifact names are appended after
	// a slash. http or https, no user info, query or fragment.
	BaseURL string
	// Arch selects the script flavour.
	Arch Arch
	// Kernel and Initrd name a kernel and its initramfs (simple names:
	// [A-Za-z0-9._-]). Initrd may be empty.
	Kernel, Initrd string
	// UKI names a Unified Kernel Image. EFI only; exclusive with Kernel.
	UKI string
	// Cmdline is the kernel command line (static, no secrets).
	Cmdline string
	// RetrySeconds is the pause before retrying a failed boot.
	// Zero means DefaultRetrySeconds.
	RetrySeconds int
}

// Render validates p and returns the iPXE script.
func Render(p Params) ([]byte, error) {
	base, err := checkBaseURL(p.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := checkCmdline(p.Cmdline); err != nil {
		return nil, err
	}
	retry := p.RetrySeconds
	if retry == 0 {
		retry = DefaultRetrySeconds
	}
	if retry < 0 || retry > maxRetry {
		return nil, fmt.Errorf("ipxe: retry delay %d s out of range [1, %d]", retry, maxRetry)
	}
	lines, err := bootLines(base, p)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!ipxe\n# sealroot boot script, arch %s. Carries no secrets.\n", p.Arch)
	// imgfree first: it drops autoexec.ipxe and the images of a failed
	// attempt, which would otherwise be passed along as extra initrds
	// (ipxe/ipxe#1723).
	b.WriteString(":retry\nimgfree\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString(":failed\n")
	fmt.Fprintf(&b, "echo sealroot: boot failed, retrying in %d s\n", retry)
	fmt.Fprintf(&b, "sleep %d\n", retry)
	b.WriteString("goto retry\n")
	return b.Bytes(), nil
}

// bootLines returns the commands that fetch and boot the artifacts.
func bootLines(base string, p Params) ([]string, error) {
	arch, err := ParseArch(string(p.Arch))
	if err != nil {
		return nil, err
	}
	for _, n := range []string{p.Kernel, p.Initrd, p.UKI} {
		if n != "" {
			if err := CheckName(n); err != nil {
				return nil, err
			}
		}
	}
	switch {
	case p.UKI != "" && (p.Kernel != "" || p.Initrd != ""):
		return nil, fmt.Errorf("%w: UKI and kernel/initrd are exclusive", ErrMissingArtifact)
	case p.UKI != "" && arch != ArchEFIx64:
		return nil, fmt.Errorf("%w: a UKI needs EFI, not %s", ErrMissingArtifact, arch)
	case p.UKI != "":
		return []string{
			joinArgs("kernel", base+"/"+p.UKI, p.Cmdline) + " || goto failed",
			"boot || goto failed",
		}, nil
	case p.Kernel == "":
		return nil, fmt.Errorf("%w: need a kernel or a UKI", ErrMissingArtifact)
	}
	return kernelLines(base, p), nil
}

// kernelLines boots a separate kernel and initrd. The initrd= argument lets
// the kernel's EFI stub find the initrd with iPXE builds older than LoadFile2
// support; BIOS kernels ignore it.
func kernelLines(base string, p Params) []string {
	var lines []string
	initrdArg := ""
	if p.Initrd != "" {
		initrdArg = "initrd=" + p.Initrd
	}
	lines = append(lines, joinArgs("kernel", base+"/"+p.Kernel, initrdArg, p.Cmdline)+" || goto failed")
	if p.Initrd != "" {
		lines = append(lines, "initrd "+base+"/"+p.Initrd+" || goto failed")
	}
	return append(lines, "boot || goto failed")
}

func joinArgs(args ...string) string {
	var nonEmpty []string
	for _, a := range args {
		if a != "" {
			nonEmpty = append(nonEmpty, a)
		}
	}
	return strings.Join(nonEmpty, " ")
}

// checkBaseURL validates u and returns it without a trailing slash.
func checkBaseURL(u string) (string, error) {
	if len(u) > maxURLLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidBaseURL, maxURLLen)
	}
	for _, c := range []byte(u) {
		if !isURLByte(c) {
			return "", fmt.Errorf("%w: character %q not allowed", ErrInvalidBaseURL, c)
		}
	}
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidBaseURL, err)
	}
	switch {
	case pu.Scheme != "http" && pu.Scheme != "https":
		return "", fmt.Errorf("%w: scheme must be http or https", ErrInvalidBaseURL)
	case pu.Host == "":
		return "", fmt.Errorf("%w: no host", ErrInvalidBaseURL)
	case pu.User != nil:
		return "", fmt.Errorf("%w: user info would be a secret", ErrInvalidBaseURL)
	case pu.RawQuery != "" || pu.ForceQuery || pu.Fragment != "":
		return "", fmt.Errorf("%w: query or fragment not allowed", ErrInvalidBaseURL)
	}
	return strings.TrimRight(u, "/"), nil
}

// isURLByte reports whether c may appear in a base URL. No '%' (iPXE would
// not expand it, but it hides other characters), no '@' (user info).
func isURLByte(c byte) bool {
	return isNameByte(c) || c == ':' || c == '/' || c == '[' || c == ']'
}

// CheckName reports whether n is a simple artifact name: 1 to 128 bytes of
// [A-Za-z0-9._-], not starting with a dot. It returns ErrInvalidName
// otherwise. The HTTP server uses the same rule for /artifacts/<name>.
func CheckName(n string) error {
	if n == "" || len(n) > maxNameLen {
		return fmt.Errorf("%w: length %d not in [1, %d]", ErrInvalidName, len(n), maxNameLen)
	}
	if n[0] == '.' {
		return fmt.Errorf("%w: %q starts with a dot", ErrInvalidName, truncate(n))
	}
	for _, c := range []byte(n) {
		if !isNameByte(c) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidName, truncate(n), c)
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// truncate shortens attacker-controlled strings before they go into errors.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
