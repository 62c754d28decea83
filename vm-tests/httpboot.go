package vmtest

import (
	"encoding/json"
	"fmt"
	"os"
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
