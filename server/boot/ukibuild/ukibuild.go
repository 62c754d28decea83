// Package ukibuild keeps the unified kernel image sealroot serves to UEFI
// machines built from the configured kernel, initramfs and command line,
// with Debian's systemd EFI stub (uki.BuildFile).
//
// Booting the UKI is what makes a UEFI boot measure the initramfs and the
// command line: the firmware measures the whole image (sections .linux,
// .cmdline, .initrd) into PCR 4 and systemd-stub measures each section
// into PCR 11 and the command line iPXE passes into PCR 12. A kernel and
// initramfs loaded separately by Debian's iPXE leave the initramfs
// unmeasured.
//
// Refresh rebuilds the image when an input changed (size, modification
// time or inode of the stub, kernel or initramfs, or the output itself was
// replaced) and otherwise only stats files, so the server calls it at
// start and before each UEFI boot script. The output is replaced
// atomically, so a download or a prediction never sees half a file.
package ukibuild

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/uki"
)

// OSRelease is the .osrel section of the UKIs the server builds.
const OSRelease = "ID=sealroot\nNAME=sealroot agent\n"

// Inputs are the files a UKI is built from and the file it is written to.
type Inputs struct {
	Stub    string // systemd EFI stub; uki.DefaultStub if empty
	Kernel  string // vmlinuz (an EFI PE image)
	Initrd  string // the agent initramfs
	Cmdline string // the built-in command line (.cmdline)
	Out     string // the UKI written
	// Sign, when set, signs an image: the UKI is built into a
	// temporary file beside Out and Sign(tmp, Out) writes the signed
	// image (atomically, as secureboot.Sign), so Out is never unsigned.
	Sign func(in, out string) error
}

// Builder keeps Inputs.Out current. It is safe for concurrent use.
type Builder struct {
	in Inputs

	mu    sync.Mutex
	built [4]fileKey // stub, kernel, initrd, out after the last build
}

type fileKey struct {
	size int64
	mod  time.Time
	ino  uint64
}

// New returns a Builder for in.
func New(in Inputs) *Builder {
	if in.Stub == "" {
		in.Stub = uki.DefaultStub
	}
	return &Builder{in: in}
}

// Refresh builds the UKI if it was never built by b or an input or the
// output changed since. It reports whether it built.
func (b *Builder) Refresh() (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys, err := b.keys()
	if err != nil {
		return false, err
	}
	if keys == b.built {
		return false, nil
	}
	linux, err := os.ReadFile(b.in.Kernel)
	if err != nil {
		return false, fmt.Errorf("uki: read kernel: %w", err)
	}
	initrd, err := os.ReadFile(b.in.Initrd)
	if err != nil {
		return false, fmt.Errorf("uki: read initramfs: %w", err)
	}
	img, err := uki.BuildFile(b.in.Stub, uki.Parts{Linux: linux, Initrd: initrd, Cmdline: b.in.Cmdline, OSRel: []byte(OSRelease)})
	if err != nil {
		return false, fmt.Errorf("build %s: %w", b.in.Out, err)
	}
	if err := b.write(img); err != nil {
		return false, err
	}
	// Inputs that changed while building are seen at the next Refresh.
	out, err := stat(b.in.Out)
	if err != nil {
		return false, err
	}
	keys[3] = out
	b.built = keys
	return true, nil
}

// write writes img to Out, signed when Inputs.Sign is set.
func (b *Builder) write(img []byte) error {
	if b.in.Sign == nil {
		if err := atomicfile.WriteFile(b.in.Out, img, 0o644); err != nil {
			return fmt.Errorf("uki: %w", err)
		}
		return nil
	}
	tmp := b.in.Out + ".unsigned"
	if err := atomicfile.WriteFile(tmp, img, 0o600); err != nil {
		return fmt.Errorf("uki: %w", err)
	}
	defer os.Remove(tmp)
	if err := b.in.Sign(tmp, b.in.Out); err != nil {
		return fmt.Errorf("uki: sign: %w", err)
	}
	return nil
}

func (b *Builder) keys() ([4]fileKey, error) {
	var keys [4]fileKey
	for i, p := range []string{b.in.Stub, b.in.Kernel, b.in.Initrd} {
		k, err := stat(p)
		if err != nil {
			return keys, err
		}
		keys[i] = k
	}
	out, err := stat(b.in.Out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return keys, err
	}
	keys[3] = out
	return keys, nil
}

func stat(path string) (fileKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileKey{}, fmt.Errorf("uki: %w", err)
	}
	k := fileKey{size: fi.Size(), mod: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.ino = st.Ino
	}
	return k, nil
}
