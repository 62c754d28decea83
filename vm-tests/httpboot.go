package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// OVMFNoPXE are QEMU arguments that turn off OVMF's IPv4 and IPv6 PXE boot
// options (OvmfPkg fw_cfg knobs), so the NIC boots only by UEFI HTTP boot.
var OVMFNoPXE = []string{
	"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
	"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
}

// ServeHTTPBoot sets, in the configuration at cfgPath, boot.http_boot to
// the served UKI and disables TFTP: firmware HTTP boot clients get the UKI's
// URL from DHCP and nothing is left to fetch by TFTP.
func (s *Sealroot) ServeHTTPBoot(cfgPath string) error {
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
	boot["http_boot"] = UKIName
	boot["disable_tftp"] = true
	if raw, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(cfgPath, raw, 0o600)
}

// SignUKI signs the served uki.efi in place with `sealroot secureboot sign`.
// The owner key is Debian's snakeoil key, which the Secure Boot OVMF
// (VMOptions.SecureBoot) has in db: as if the site had enrolled sealroot's
// owner certificate.
func (s *Sealroot) SignUKI(ctx context.Context) error {
	dir := filepath.Join(s.StateDir, "secureboot")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Debian ships the key encrypted with the passphrase "snakeoil".
	out, err := exec.CommandContext(ctx, "openssl", "pkey", "-in", SnakeoilKey, "-passin", "pass:snakeoil",
		"-out", filepath.Join(dir, "owner.key")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("decrypt %s: %w: %s", SnakeoilKey, err, out)
	}
	if err := copyFile(SnakeoilCert, filepath.Join(dir, "owner.crt")); err != nil {
		return err
	}
	uki := filepath.Join(s.ArtifactsDir(), UKIName)
	_, err = s.run(ctx, "secureboot", "sign", "--state-dir", s.StateDir, uki, uki)
	return err
}
