package cli

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func TestWriteMachine_boot_state_note(t *testing.T) {
	tests := []struct {
		name     string
		policy   store.Policy
		firmware string
		want     string // "" means no Boot state line
	}{
		{"bios_identity_only", store.PolicyIdentityOnly, "bios", "Boot state:     NOT checked: legacy BIOS cannot measure the kernel"},
		{"uefi_identity_only", store.PolicyIdentityOnly, "uefi", "Boot state:     NOT checked: policy identity-only"},
		{"bios_predicted", store.PolicyPredicted, "bios", "Boot state:     legacy BIOS: the kernel, initramfs and command line are not measured"},
		{"uefi_predicted", store.PolicyPredicted, "uefi", ""},
		{"uefi_pinned", store.PolicyPinned, "uefi", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			m := &store.Machine{State: store.StateApproved, Policy: tt.policy, Hints: wire.Hints{Firmware: tt.firmware}}
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
