package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/initramfs"
	"github.com/sealroot/sealroot/initramfs/embedded"
	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/uki"
	"github.com/sealroot/sealroot/version"
)

type initramfsBuildArgs struct {
	out         string
	agent       string // prebuilt agent binary
	agentPkg    string // else: go package built with initramfs.BuildAgent
	initPkg     string // first stage package ("" = the agent is /init)
	agentConfig string // agent.json file
	cacheDir    string // FetchKernel cache
	modulesRoot string // else: FetchKernel
	kernelVer   string
	modules     []string
	compression string
	uki         string // also write a UKI here
	ukiKernel   string // kernel for the UKI (default: the fetched one)
	ukiCmdline  string
	ukiStub     string
}

// initramfsExt maps a compression to the output file extension.
var initramfsExt = map[string]string{"gzip": ".gz", "zstd": ".zst", "xz": ".xz", "none": ""}

func newInitramfsCmd(e *env) *cobra.Command {
	var args initramfsBuildArgs
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the agent initramfs (reproducible, secret-free)",
		Long: `Build the initramfs that PXE-booted machines run: a first stage as /init
that seeds the kernel CRNG from the TPM and executes the agent, the agent, its
public configuration (--agent-config, checked for secrets) and the kernel
modules it needs. Without --modules-root, Debian's current amd64 kernel is
downloaded with apt-get into --kernel-cache and its modules are used; boot
the vmlinuz printed on the "kernel:" line with this initramfs.
The last line of output is "initramfs: <path> <bytes> bytes".`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runInitramfsBuild(c, e, args) },
	}
	f := build.Flags()
	f.StringVarP(&args.out, "out", "o", "", "output `file` (default build/initramfs.cpio plus .gz, .zst or .xz)")
	f.StringVar(&args.agent, "agent", "", "prebuilt static agent `binary` (default: build --agent-pkg)")
	f.StringVar(&args.agentPkg, "agent-pkg", "./cmd/sealroot-agent", "agent Go `package` to build (default: the agent embedded in a packaged sealroot, else this package)")
	f.StringVar(&args.initPkg, "init-pkg", "./cmd/sealroot-init", "first-stage `package` that seeds the CRNG from the TPM and runs the agent (\"\" = the agent is /init)")
	f.StringVar(&args.agentConfig, "agent-config", "", "agent configuration JSON `file` (public data only)")
	f.StringVar(&args.cacheDir, "kernel-cache", defaultKernelCache(), "kernel download cache `dir`")
	f.StringVar(&args.modulesRoot, "modules-root", "", "root `dir` with lib/modules/<kver> (default: fetch Debian's kernel)")
	f.StringVar(&args.kernelVer, "kernel-version", "", "kernel `release` under --modules-root")
	f.StringSliceVar(&args.modules, "modules", initramfs.DefaultModules(), "modules to ship with their dependencies")
	f.StringVar(&args.compression, "compression", initramfs.DefaultCompression, "gzip, zstd, xz or none")
	f.StringVar(&args.uki, "uki", "", "also write a unified kernel image (kernel + initramfs + command line) to `file`")
	f.StringVar(&args.ukiKernel, "uki-kernel", "", "kernel `file` for --uki (default: the fetched Debian kernel)")
	f.StringVar(&args.ukiCmdline, "uki-cmdline", "console=ttyS0 console=tty0 panic=10", "built-in command line of the UKI (iPXE's script line replaces it unless Secure Boot is on)")
	f.StringVar(&args.ukiStub, "uki-stub", uki.DefaultStub, "systemd EFI stub `file` (Debian systemd-boot-efi)")
	return cmdline.Group("initramfs", "Build the boot initramfs", build)
}

func runInitramfsBuild(c *cobra.Command, e *env, args initramfsBuildArgs) error {
	_, err := buildInitramfs(c, e, args)
	return err
}

// buildInitramfs builds as args say; the kernel is the fetched Debian
// kernel, nil with --modules-root.
func buildInitramfs(c *cobra.Command, e *env, args initramfsBuildArgs) (*initramfs.Kernel, error) {
	ext, ok := initramfsExt[args.compression]
	if !ok {
		return nil, cmdline.Usagef(c, "unknown --compression %q", args.compression)
	}
	if (args.modulesRoot == "") != (args.kernelVer == "") {
		return nil, cmdline.Usagef(c, "--modules-root and --kernel-version go together")
	}
	if args.out == "" {
		args.out = "build/initramfs.cpio" + ext
	}
	ctx := c.Context()
	log := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Output: e.Stderr, Level: hclog.Info})
	opts := initramfs.Options{
		AgentBinary:   args.agent,
		ModulesRoot:   args.modulesRoot,
		KernelVersion: args.kernelVer,
		Modules:       args.modules,
		Compression:   args.compression,
		Logger:        log,
	}
	var kernel *initramfs.Kernel
	if args.modulesRoot == "" {
		k, err := initramfs.FetchKernel(ctx, args.cacheDir)
		if err != nil {
			return nil, err
		}
		kernel, opts.ModulesRoot, opts.KernelVersion = k, k.ModulesRoot, k.Version
	}
	if args.agentConfig != "" {
		b, err := os.ReadFile(args.agentConfig)
		if err != nil {
			return nil, err
		}
		opts.AgentConfig = b
	}
	flags := c.Flags()
	if opts.AgentBinary == "" {
		p, cleanup, err := agentBinary(ctx, log, "sealroot-agent", args.agentPkg, embedded.Agent(), !flags.Changed("agent-pkg"))
		if err != nil {
			return nil, err
		}
		defer cleanup()
		opts.AgentBinary = p
	}
	if args.initPkg != "" {
		p, cleanup, err := agentBinary(ctx, log, "sealroot-init", args.initPkg, embedded.Init(), !flags.Changed("init-pkg"))
		if err != nil {
			return nil, err
		}
		defer cleanup()
		opts.InitBinary = p
	}
	if args.uki != "" && args.ukiKernel == "" {
		if kernel == nil {
			return nil, cmdline.Usagef(c, "--uki with --modules-root needs --uki-kernel")
		}
		args.ukiKernel = kernel.VMLinuz
	}
	res, err := writeInitramfs(c, opts, args.out)
	if err != nil {
		return nil, err
	}
	if err := printInitramfs(e, args.out, kernel, res); err != nil || args.uki == "" {
		return kernel, err
	}
	return kernel, writeUKI(e, args)
}

// defaultKernelCache is build/cache in a checkout, /var/cache/sealroot in
// a packaged sealroot (which embeds the agent).
func defaultKernelCache() string {
	if embedded.Agent() != nil {
		return "/var/cache/sealroot"
	}
	return "build/cache"
}

// agentBinary writes the binary embedded in this sealroot (a package
// build) to a temporary file when it has one and useEmbedded, else builds
// pkg from source (needs Go and the checkout). cleanup removes the file.
func agentBinary(ctx context.Context, log hclog.Logger, name, pkg string, emb []byte, useEmbedded bool) (string, func(), error) {
	tmp, err := os.MkdirTemp("", name+"-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	p := filepath.Join(tmp, name)
	if len(emb) > 0 && useEmbedded {
		log.Info("using the embedded binary", "binary", name, "version", version.String())
		err = os.WriteFile(p, emb, 0o755)
	} else {
		log.Info("building from source", "binary", name, "package", pkg)
		err = initramfs.BuildAgent(ctx, pkg, p)
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return p, cleanup, nil
}

// writeUKI joins the kernel, the initramfs just built and the command line
// with systemd's EFI stub. Booted by iPXE as "uki.efi", the command line
// the kernel sees (and PCR 12 measures) is "uki.efi <script arguments>".
func writeUKI(e *env, args initramfsBuildArgs) error {
	kernel, err := os.ReadFile(args.ukiKernel)
	if err != nil {
		return err
	}
	initrd, err := os.ReadFile(args.out)
	if err != nil {
		return err
	}
	out, err := uki.BuildFile(args.ukiStub, uki.Parts{Linux: kernel, Initrd: initrd, Cmdline: args.ukiCmdline, OSRel: []byte(ukiOSRelease)})
	if err != nil {
		return err
	}
	digest, err := uki.Authenticode(out)
	if err != nil {
		return err
	}
	tmp := args.uki + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, args.uki); err != nil {
		return err
	}
	if e.JSON {
		return nil // the initramfs JSON was printed; the UKI line is for people
	}
	_, err = fmt.Fprintf(e.Stdout, "uki: %s %d bytes, authenticode sha256: %x\n", args.uki, len(out), digest)
	return err
}

// ukiOSRelease is the UKI's .osrel section.
const ukiOSRelease = "ID=sealroot\nNAME=sealroot agent\nPRETTY_NAME=sealroot netboot agent\n"

// writeInitramfs builds into a temporary file next to out and renames it,
// so out is never a partial archive.
func writeInitramfs(c *cobra.Command, opts initramfs.Options, out string) (*initramfs.Result, error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".initramfs-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	res, err := initramfs.Build(c.Context(), opts, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return nil, err
	}
	return res, os.Rename(f.Name(), out)
}

func printInitramfs(e *env, out string, k *initramfs.Kernel, res *initramfs.Result) error {
	if e.JSON {
		return e.printJSON(struct {
			Path    string            `json:"path"`
			Bytes   int64             `json:"bytes"`
			SHA256  string            `json:"sha256"`
			Modules []string          `json:"modules"`
			Kernel  *initramfs.Kernel `json:"kernel,omitempty"`
		}{out, res.Bytes, res.SHA256, res.Modules, k})
	}
	if k != nil {
		fmt.Fprintf(e.Stdout, "kernel: %s %s %s\n", k.Package, k.PackageVersion, k.VMLinuz)
	}
	fmt.Fprintf(e.Stdout, "modules: %d, sha256: %s\n", len(res.Modules), res.SHA256)
	_, err := fmt.Fprintf(e.Stdout, "initramfs: %s %d bytes\n", out, res.Bytes)
	return err
}
