package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

// TestViewJSON pins the JSON the admin API answers (and `sealroot ...
// --json` prints) in testdata/*.json. Fields may be added; a change to an
// existing field breaks operators' scripts. UPDATE_TESTDATA=1 rewrites the
// files.
func TestViewJSON(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	bs := &api.BootState{
		PCRs: map[int][]byte{4: {0xaa}},
		Events: []api.Event{{PCR: 4, Sequence: 2, Type: 0x80000003,
			TypeName: "EV_EFI_BOOT_SERVICES_APPLICATION", Digest: []byte{0xaa}, Description: "shim"}},
		At: at,
	}
	root := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}}
	tests := []struct {
		file string
		v    any
	}{
		{"machine.json", &api.Machine{
			ID: "aaaaaaaa11111111111111111111111111111111111111111111111111111111", Name: "web-1",
			State: api.StateNeedsReapproval, EKPublic: []byte{1}, EKCert: []byte{2}, AKPublic: []byte{3},
			EKCertStatus: "verified (from TPM NV, issuer \"CN=vendor CA\")",
			Hints:        wire.Hints{Hostname: "web-1", MACs: []string{"52:54:00:12:34:56"}, Firmware: "uefi"},
			Policy:       api.PolicyPinned, Approved: bs, Reported: bs, Diff: "PCR 4 changed",
			Root: root, Group: "lab", ResetCount: 3, RestartCount: 1,
			FirstSeen: at, LastSeen: at, LastAddress: "10.0.0.5:4242", BootCount: 7, Reason: "changed",
			History: []api.BootAttempt{{Time: at, Server: "sr-1", Remote: "10.0.0.5:4242", Outcome: "refused",
				Check: "event-log", Reason: "PCR 15 is not zero", AgentVersion: "0.3.0", DurationMillis: 41}},
		}},
		{"audit_entry.json", &api.AuditEntry{Time: at, Actor: "server", Remote: "10.0.0.5:4242",
			MachineID: "aaaaaaaa11111111111111111111111111111111111111111111111111111111", Action: "attest",
			Outcome: "refused", Check: "event-log", Reason: "PCR 15 is not zero"}},
		{"machine_bare.json", &api.Machine{ID: "aaaaaaaa11111111111111111111111111111111111111111111111111111111",
			State: api.StatePending, Root: wire.RootPlan{Kind: wire.RootNone}}},
		{"group.json", &api.Group{Name: "lab", Root: root}},
		{"image.json", &api.Image{Name: "debian", Digest: "ab", Size: 1 << 30, TreeDigest: "cd", Imported: at}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := json.MarshalIndent(tt.v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tt.file)
			if os.Getenv("UPDATE_TESTDATA") == "1" {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s JSON =\n%s\nwant (%s)\n%s", tt.file, got, path, want)
			}
		})
	}
}
