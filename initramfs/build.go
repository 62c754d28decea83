package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/initramfs/preload"
)

// DefaultModules returns the modules shipped when Options.Modules is nil:
// NICs of common VMs and small machines, the entropy source of VMs, iSCSI
// and NFSv4 roots, WireGuard, ext4 and overlayfs, efivarfs (the boot
// menu's local disk). crc32c is listed
// explicitly because iscsi_tcp requests it at run time without declaring a
// softdep.
//
// The NIC drivers are virtio and those of the Intel and Realtek chips in
// current NUCs, mini PCs and desktops (e1000e, igc, igb, r8169); the
// legacy PCI e1000 is left out to keep the image under 6 MiB: add it
// to `sealroot initramfs build --modules` (which replaces this list)
// where old hardware needs it.
func DefaultModules() []string {
	return []string{
		"virtio_net", "virtio_pci", "virtio_rng",
		"e1000e", "igc", "igb", "r8169",
		"iscsi_tcp", "sd_mod", "crc32c_generic", "crc32c-intel",
		"nfsv4", "wireguard", "ext4", "overlay",
		"efivarfs", // the boot menu's local disk sets BootNext
	}
}

// AgentConfigPath is where the agent configuration lives in the initramfs.
const AgentConfigPath = "etc/sealroot/agent.json"

// ErrAgentNotStatic reports an agent binary that is not a statically linked
// x86-64 ELF executable; the initramfs has no dynamic loader.
var ErrAgentNotStatic = errors.New("initramfs: agent is not a static x86-64 ELF executable")

// AgentPath is where the agent goes when a first stage is /init; it must
// match cmd/sealroot-init's default.
const AgentPath = "bin/sealroot-agent"

// Options configures Build. The zero value is not valid: AgentBinary is
// required.
type Options struct {
	// AgentBinary is the path of the agent, built with CGO_ENABLED=0 (see
	// BuildAgent). It becomes /init, or AgentPath when InitBinary is set.
	AgentBinary string

	// InitBinary, if set, is the first stage (cmd/sealroot-init): it
	// becomes /init, seeds the CRNG from the TPM and executes the agent
	// at AgentPath.
	InitBinary string

	// ModulesRoot is a root directory holding lib/modules/<KernelVersion>/
	// with depmod's index files (see FetchKernel). Empty: ship no modules.
	ModulesRoot string

	// KernelVersion is the kernel release (uname -r), e.g. "6.1.0-56-amd64".
	// Required with ModulesRoot.
	KernelVersion string

	// Modules are the wanted modules (names or aliases); their closure is
	// shipped. Nil: DefaultModules().
	Modules []string

	// AgentConfig is written to /etc/sealroot/agent.json when non-nil. It
	// must be a JSON object without secrets (CheckAgentConfig).
	AgentConfig []byte

	// Compression is "gzip", "zstd", "xz" or "none"; "" is
	// DefaultCompression (zstd).
	Compression string

	// Logger receives progress; nil discards.
	Logger hclog.Logger
}

// Result describes a built initramfs.
type Result struct {
	Bytes              int64    // compressed size written to out
	CPIOBytes          int64    // uncompressed cpio size
	SHA256             string   // hex SHA-256 of the bytes written to out
	Modules            []string // shipped modules in load order
	Builtin            []string // wanted modules built into the kernel
	UnresolvedSoftdeps []string // "module: target" soft deps found nowhere
}

// Build writes the initramfs described by opts to out. The same inputs give
// byte-identical output.
func Build(ctx context.Context, opts Options, out io.Writer) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("initramfs")
	if err := checkStaticELF(opts.AgentBinary); err != nil {
		return nil, err
	}
	if opts.AgentConfig != nil {
		if err := CheckAgentConfig(opts.AgentConfig); err != nil {
			return nil, err
		}
	}
	tree := newTree()
	if opts.InitBinary != "" {
		if err := checkStaticELF(opts.InitBinary); err != nil {
			return nil, err
		}
		tree.addFile("init", 0o755, "", opts.InitBinary)
		tree.addFile(AgentPath, 0o755, "", opts.AgentBinary)
	} else {
		tree.addFile("init", 0o755, "", opts.AgentBinary)
	}
	if opts.AgentConfig != nil {
		tree.addFile(AgentConfigPath, 0o444, string(opts.AgentConfig), "")
	}
	res := &Result{}
	if opts.ModulesRoot != "" {
		if err := addModules(tree, opts, res); err != nil {
			return nil, err
		}
		for _, u := range res.UnresolvedSoftdeps {
			log.Warn("soft dependency not found", "dep", u)
		}
	}
	h := sha256.New()
	counted := &countWriter{w: io.MultiWriter(out, h)}
	cw, err := newCompressor(opts.Compression, counted)
	if err != nil {
		return nil, err
	}
	raw := &countWriter{w: cw}
	if err := tree.writeCPIO(ctx, raw); err != nil {
		return nil, err
	}
	if err := cw.Close(); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	res.Bytes, res.CPIOBytes = counted.n, raw.n
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	log.Info("built initramfs", "bytes", res.Bytes, "cpio_bytes", res.CPIOBytes,
		"modules", len(res.Modules), "sha256", res.SHA256)
	return res, nil
}

// addModules adds the module closure, the trimmed index files and the
// preload list under lib/modules/<kver>/.
func addModules(tree *tree, opts Options, res *Result) error {
	if opts.KernelVersion == "" || path.Base(opts.KernelVersion) != opts.KernelVersion {
		return fmt.Errorf("initramfs: bad kernel version %q", opts.KernelVersion)
	}
	ix, err := loadModIndex(opts.ModulesRoot, opts.KernelVersion)
	if err != nil {
		return err
	}
	wanted := opts.Modules
	if wanted == nil {
		wanted = DefaultModules()
	}
	c, err := ix.closureOf(wanted)
	if err != nil {
		return err
	}
	files, err := ix.trimmedFiles(c)
	if err != nil {
		return err
	}
	base := path.Join("lib/modules", opts.KernelVersion)
	tree.addDir(base, 0o755)
	for name, data := range files {
		tree.addFile(path.Join(base, name), 0o644, string(data), "")
	}
	var pl bytes.Buffer
	if err := preload.Write(&pl, ix.preloadEntries(c)); err != nil {
		return err
	}
	tree.addFile(path.Join(base, preload.FileName), 0o644, pl.String(), "")
	for _, m := range c.order {
		tree.addFile(path.Join(base, ix.path[m]), 0o644, "", joinLocal(ix.dir, ix.path[m]))
	}
	res.Modules, res.Builtin, res.UnresolvedSoftdeps = c.order, c.builtin, c.unresolved
	return nil
}

// checkStaticELF rejects anything but a static x86-64 ELF executable.
func checkStaticELF(p string) error {
	if p == "" {
		return fmt.Errorf("initramfs: Options.AgentBinary not set")
	}
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrAgentNotStatic, p, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		return fmt.Errorf("%w: %s: %v %v", ErrAgentNotStatic, p, f.Machine, f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s has an ELF interpreter", ErrAgentNotStatic, p)
		}
	}
	return nil
}

// countWriter counts bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
