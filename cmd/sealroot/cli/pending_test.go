package cli_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

const (
	idP1 = "cafef00d1111111111111111111111111111111111111111111111111111111a"
	idP2 = "cafef00d2222222222222222222222222222222222222222222222222222222b"
	idP3 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func pendingMachines() []*store.Machine {
	first := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	reported := &store.BootState{PCRs: map[int][]byte{0: bytes.Repeat([]byte{0xab}, 32)}}
	return []*store.Machine{
		{ID: idP1, State: store.StatePending, Reported: reported, FirstSeen: first, LastSeen: first.Add(time.Minute), LastAddress: "192.168.1.50:40000",
			Hints: wire.Hints{MACs: []string{"1c:69:7a:00:00:01"}, Vendor: "Intel(R) Client Systems", Product: "NUC11TNHi5", Serial: "G6TN12345"}},
		{ID: idP2, State: store.StatePending, Reported: reported, FirstSeen: first, LastSeen: first.Add(2 * time.Minute), LastAddress: "192.168.1.51:40000",
			Hints: wire.Hints{MACs: []string{"1c:69:7a:00:00:01"}, Vendor: "Intel(R) Client Systems", Product: "NUC11TNHi5", Serial: "G6TN99999"}},
		{ID: idP3, State: store.StatePending, Reported: reported, FirstSeen: first, LastSeen: first, LastAddress: "192.168.1.52:40000",
			Hints: wire.Hints{MACs: []string{"52:54:00:00:00:03"}, Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)"}},
		{ID: idA, Name: "web1", State: store.StateApproved, Hints: wire.Hints{MACs: []string{"1c:69:7a:00:00:01"}}},
	}
}

func TestMachineListPending(t *testing.T) {
	sock := apitest.Serve(t, apitest.NewService(t, pendingMachines()...))
	r := run(t, sock, "", "machine", "list", "--pending")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"FINGERPRINT       MACS               IP            VENDOR                   PRODUCT                         SERIAL     FIRST-SEEN            LAST-SEEN             NOTE\n",
		"0123456789abcdef  52:54:00:00:00:03  192.168.1.52  QEMU                     Standard PC (Q35 + ICH9, 2009)  -          2026-12-01T08:00:00Z  2026-12-01T08:00:00Z  -\n",
		"cafef00d11111111  1c:69:7a:00:00:01  192.168.1.50  Intel(R) Client Systems  NUC11TNHi5                      G6TN12345  2026-12-01T08:00:00Z  2026-12-01T08:01:00Z  DUPLICATE MAC 1c:69:7a:00:00:01 also claimed by cafef00d2222\n",
		"WARNING: pending machines claim the same hints",
		"approve: sealroot machine approve FINGERPRINT",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("machine list --pending lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "web1") || strings.Contains(r.stdout, "aaaaaaaa") {
		t.Errorf("an approved machine is listed as pending:\n%s", r.stdout)
	}
}

// TestMachineApprove_prefix: a unique prefix of 8+ hex digits approves;
// an ambiguous or short one is refused and approves nothing.
func TestMachineApprove_prefix(t *testing.T) {
	svc := apitest.NewService(t, pendingMachines()...)
	sock := apitest.Serve(t, svc)
	for _, tc := range []struct {
		ref  string
		code int
		want string
	}{
		{"cafef00d", 1, "ambiguous"},
		{"0123456", 1, "not found"}, // 7 digits: not a prefix
		{"cafef00d2", 0, "approved cafef00d2222"},
		{"sha256:01234567", 0, "approved 0123456789ab"},
	} {
		r := run(t, sock, "", "machine", "approve", tc.ref)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("approve %s = %d %q %q, want %d and %q", tc.ref, r.code, r.stdout, r.stderr, tc.code, tc.want)
		}
	}
	m, err := svc.Machine(t.Context(), idP1)
	if err != nil || m.State != "pending" {
		t.Errorf("machine %s after refused approvals: %v %v, want pending", idP1, m, err)
	}
}
