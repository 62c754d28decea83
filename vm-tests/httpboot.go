package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sealroot/sealroot/server/predict"
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
	if err := s.setBoot(cfgPath, "http_boot", UKIName); err != nil {
		return err
	}
	return s.setBoot(cfgPath, "disable_tftp", true)
}

// setBoot sets boot.<key> in the configuration at cfgPath.
func (s *Sealroot) setBoot(cfgPath, key string, value any) error {
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
	boot[key] = value
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

// GUIDImageSecurityDatabase owns db and dbx (EFI_IMAGE_SECURITY_DATABASE_GUID).
const GUIDImageSecurityDatabase = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"

// GUIDGlobalVariable owns PK and KEK (EFI_GLOBAL_VARIABLE).
const GUIDGlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// WriteSecureBootVars writes, into dir, the PK, KEK, db and dbx data of
// the OVMF variable store image at varsPath as the files of
// boot.secure_boot_vars (predict.PKFile, ...): what an operator exports
// from a machine with efi-readvar. A variable the store lacks is left out.
func WriteSecureBootVars(dir, varsPath string) error {
	img, err := os.ReadFile(varsPath)
	if err != nil {
		return err
	}
	vars, err := ReadOVMFVars(img)
	if err != nil {
		return fmt.Errorf("%s: %w", varsPath, err)
	}
	files := map[string]string{
		GUIDGlobalVariable + "/PK":         predict.PKFile,
		GUIDGlobalVariable + "/KEK":        predict.KEKFile,
		GUIDImageSecurityDatabase + "/db":  predict.DBFile,
		GUIDImageSecurityDatabase + "/dbx": predict.DBXFile,
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, v := range vars {
		if name, ok := files[v.GUID+"/"+v.Name]; ok {
			if err := os.WriteFile(filepath.Join(dir, name), v.Data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// ShimSigned is Debian's Microsoft-signed shim (package shim-signed).
const ShimSigned = "/usr/lib/shim/shimx64.efi.signed"

// Names of shim and of the second stage it loads from the same place
// (shim's DEFAULT_LOADER; over HTTP boot, the same URL's directory).
const (
	ShimName       = "shimx64.efi"
	ShimLoaderName = "grubx64.efi"
)

// ServeShim has HTTP boot clients load Debian's shim (boot.http_boot
// shimx64.efi) and puts the served, signed uki.efi beside it as
// grubx64.efi, the second stage shim fetches and verifies: against db,
// or against MokList, where a site enrolls the owner certificate as a
// MOK. Call it after SignUKI; TFTP stays off.
func (s *Sealroot) ServeShim(cfgPath string) error {
	art := s.ArtifactsDir()
	if err := copyFile(ShimSigned, filepath.Join(art, ShimName)); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(art, UKIName), filepath.Join(art, ShimLoaderName)); err != nil {
		return err
	}
	return s.setBoot(cfgPath, "http_boot", ShimName)
}
