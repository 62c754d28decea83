package cli

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

func TestWriteMachine_boot_state_note(t *testing.T) {
	tests := []struct {
		name     string
		policy   api.Policy
		firmware string
		want     string // "" means no Boot state line
	}{
		{"bios_identity_only", api.PolicyIdentityOnly, "bios", "Boot state:     NOT checked: legacy BIOS cannot measure the kernel"},
		{"uefi_identity_only", api.PolicyIdentityOnly, "uefi", "Boot state:     NOT checked: policy identity-only"},
		{"bios_predicted", api.PolicyPredicted, "bios", "Boot state:     legacy BIOS: the kernel, initramfs and command line are not measured"},
		{"uefi_predicted", api.PolicyPredicted, "uefi", ""},
		{"uefi_pinned", api.PolicyPinned, "uefi", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			m := &api.Machine{State: api.StateApproved, Policy: tt.policy, Hints: wire.Hints{Firmware: tt.firmware}}
			if err := writeMachine(&b, m, nil); err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if strings.Contains(b.String(), "Boot state:") {
					t.Errorf("unexpected boot state note:\n%s", b.String())
				}
				return
			}
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("machine show lacks %q:\n%s", tt.want, b.String())
			}
		})
	}
}
