package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultKernelMetaPackage is the Debian metapackage whose dependency names
// the kernel image package FetchKernel downloads.
const DefaultKernelMetaPackage = "linux-image-amd64"

// ErrToolMissing reports that a host tool FetchKernel needs (apt-cache,
// apt-get, dpkg-deb, depmod) is not installed.
var ErrToolMissing = errors.New("initramfs: host tool missing")

// Kernel is a Debian kernel image unpacked into a cache directory.
type Kernel struct {
	Package        string // e.g. "linux-image-6.1.0-56-amd64"
	PackageVersion string // e.g. "6.1.192-2"
	Version        string // uname -r, e.g. "6.1.0-56-amd64"
	VMLinuz        string // path of boot/vmlinuz-<Version>
	ModulesRoot    string // root holding lib/modules/<Version>/ with modules.dep
}

// completeMarker is written last into an unpacked kernel directory; its
// presence makes FetchKernel reuse the directory.
const completeMarker = ".sealroot-complete"

// FetchKernel resolves Debian's current amd64 kernel image package (the
// dependency of linux-image-amd64), downloads it with apt-get, unpacks it
// under cacheDir/<package>_<version>/ and runs depmod there. It is
// idempotent: a completely unpacked kernel in cacheDir is reused without
// downloading. apt-get update must have been run.
func FetchKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	pkg, err := resolveKernelPackage(ctx, DefaultKernelMetaPackage)
	if err != nil {
		return nil, err
	}
	ver, err := candidateVersion(ctx, pkg)
	if err != nil {
		return nil, err
	}
	k := &Kernel{
		Package:        pkg,
		PackageVersion: ver,
		Version:        strings.TrimPrefix(pkg, "linux-image-"),
	}
	dir, err := filepath.Abs(filepath.Join(cacheDir, pkg+"_"+ver))
	if err != nil {
		return nil, err
	}
	k.ModulesRoot = dir
	k.VMLinuz = filepath.Join(dir, "boot", "vmlinuz-"+k.Version)
	if _, err := os.Stat(filepath.Join(dir, completeMarker)); err == nil {
		return k, nil
	}
	if err := unpackKernel(ctx, k, cacheDir, dir); err != nil {
		return nil, err
	}
	return k, nil
}

// unpackKernel downloads k.Package into a staging directory next to dir,
// extracts it, runs depmod and renames the result to dir.
func unpackKernel(ctx context.Context, k *Kernel, cacheDir, dir string) error {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(cacheDir, "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	dl := filepath.Join(stage, "dl")
	root := filepath.Join(stage, "root")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return err
	}
	// apt-get download writes into its working directory.
	if _, err := runTool(ctx, dl, "apt-get", "download", k.Package+"="+k.PackageVersion); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: got %d .deb files", k.Package, len(debs))
	}
	if _, err := runTool(ctx, "", "dpkg-deb", "-x", debs[0], root); err != nil {
		return err
	}
	if _, err := runTool(ctx, "", "depmod", "-b", root, k.Version); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+k.Version)); err != nil {
		return fmt.Errorf("unpacked %s: %w", k.Package, err)
	}
	if err := os.WriteFile(filepath.Join(root, completeMarker), nil, 0o644); err != nil {
		return err
	}
	if err := os.Rename(root, dir); err != nil {
		// A concurrent fetch may have won the race; its result is as good.
		if _, serr := os.Stat(filepath.Join(dir, completeMarker)); serr == nil {
			return nil
		}
		return fmt.Errorf("install kernel cache: %w", err)
	}
	return nil
}

// resolveKernelPackage returns the linux-image-* package that meta depends on.
func resolveKernelPackage(ctx context.Context, meta string) (string, error) {
	out, err := runTool(ctx, "", "apt-cache", "depends", meta)
	if err != nil {
		return "", err
	}
	if pkg, ok := aptField(out, "Depends:", "linux-image-"); ok {
		return pkg, nil
	}
	return "", fmt.Errorf("apt-cache depends %s: no linux-image dependency", meta)
}

// candidateVersion returns the version apt would install for pkg.
func candidateVersion(ctx context.Context, pkg string) (string, error) {
	out, err := runTool(ctx, "", "apt-cache", "policy", pkg)
	if err != nil {
		return "", err
	}
	if ver, ok := aptField(out, "Candidate:", ""); ok && ver != "(none)" {
		return ver, nil
	}
	return "", fmt.Errorf("apt-cache policy %s: no candidate version", pkg)
}

// aptField returns the value of the first "key value" line of apt-cache
// output whose value starts with prefix.
func aptField(out []byte, key, prefix string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key && strings.HasPrefix(f[1], prefix) {
			return f[1], true
		}
	}
	return "", false
}

// runTool runs a host tool in dir and returns its stdout. depmod lives in
// /sbin, which is not always on PATH.
func runTool(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(d, name)); serr == nil {
				path, err = filepath.Join(d, name), nil
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrToolMissing, name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
