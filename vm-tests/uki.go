package vmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sealroot/sealroot/uki"
)

// UKIName is the name under which [Sealroot.ServeUKI] serves the UKI; iPXE
// prepends it to the command line the kernel sees and PCR 12 measures.
const UKIName = "uki.efi"

// defaultCmdline is the lab's kernel command line: serial only (the VMs
// have no screen; sealroot's default, config.DefaultCmdline, adds tty0).
const defaultCmdline = "console=ttyS0 panic=10"

// ukiOSRelease is the .osrel section of the UKIs the tests build.
const ukiOSRelease = "ID=sealroot\nNAME=sealroot agent (vm-tests)\n"

// ArtifactsDir is the directory the server serves over HTTP and predicts
// from.
func (s *Sealroot) ArtifactsDir() string { return filepath.Join(s.StateDir, "artifacts") }

// ServeUKI writes uki.efi to the artifacts directory, built from the
// shared kernel, the sealroot initramfs and cmdline (default sealroot's),
// and sets "boot": {"uki": "uki.efi"} in the configuration at cfgPath.
// UEFI clients then get `kernel http://…/uki.efi <cmdline>`.
func (s *Sealroot) ServeUKI(b *sealrootBuild, cfgPath, cmdline string) error {
	if cmdline == "" {
		cmdline = defaultCmdline
	}
	initrd, err := os.ReadFile(b.initramfs)
	if err != nil {
		return err
	}
	if err := BuildUKI(b.vmlinuz, initrd, cmdline, filepath.Join(s.ArtifactsDir(), UKIName)); err != nil {
		return err
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("config %s: %w", cfgPath, err)
	}
	boot, _ := cfg["boot"].(map[string]any)
	if boot == nil {
		return fmt.Errorf("config %s: no boot section", cfgPath)
	}
	boot["uki"] = UKIName
	raw, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(cfgPath, raw, 0o600)
}

// SealrootInitramfs returns the sealroot initramfs shared by the test
// process (built by startSealroot).
func SealrootInitramfs() ([]byte, error) {
	if shared.initramfs == "" {
		return nil, fmt.Errorf("vmtest: sealroot initramfs not built yet")
	}
	return os.ReadFile(shared.initramfs)
}

// BuildUKI joins kernel (a file), initrd and cmdline with Debian's systemd
// stub and replaces out with the result atomically, so a server predicting
// from out never reads half a file.
func BuildUKI(kernel string, initrd []byte, cmdline, out string) error {
	linux, err := os.ReadFile(kernel)
	if err != nil {
		return err
	}
	img, err := uki.BuildFile("", uki.Parts{Linux: linux, Initrd: initrd, Cmdline: cmdline, OSRel: []byte(ukiOSRelease)})
	if err != nil {
		return fmt.Errorf("build UKI: %w", err)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, img, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
