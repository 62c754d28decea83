package initramfs

import "testing"

func TestAptField(t *testing.T) {
	depends := "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"
	policy := "linux-image-6.1.0-56-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n"
	tests := []struct {
		name, out, key, prefix string
		want                   string
		ok                     bool
	}{
		{"depends", depends, "Depends:", "linux-image-", "linux-image-6.1.0-56-amd64", true},
		{"depends_other_prefix", depends, "Depends:", "linux-headers-", "", false},
		{"candidate", policy, "Candidate:", "", "6.1.192-2", true},
		{"installed_none", policy, "Installed:", "", "(none)", true},
		{"missing_key", policy, "Pinned:", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := aptField([]byte(tt.out), tt.key, tt.prefix)
			if got != tt.want || ok != tt.ok {
				t.Errorf("aptField(%q, %q) = %q, %v, want %q, %v", tt.key, tt.prefix, got, ok, tt.want, tt.ok)
			}
		})
	}
}
