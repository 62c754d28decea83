package cli_test

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/store"
)

// TestMachineShow_root_link runs `machine show` against a server that
// reports root links (without a tunnel: every root is plain) and one
// that does not.
func TestMachineShow_root_link(t *testing.T) {
	ms := testMachines()
	ms[0].Policy = store.PolicyIdentityOnly
	svc := apitest.NewService(t, ms...)
	withLinks := apitest.Serve(t, svc, api.WithRootLinks(&api.Links{Machines: svc}))
	r := run(t, withLinks, "", "machine", "show", "web1")
	for _, want := range []string{
		"Boot state:     NOT checked: policy identity-only",
		"Root link:      plain LAN (the server runs no WireGuard tunnel)\n",
		"WARNING:        root transport is plain: root I/O crosses the LAN unencrypted and unauthenticated\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("machine show lacks %q:\n%s", want, r.stdout)
		}
	}

	r = run(t, apitest.Serve(t, svc), "", "machine", "show", "web1")
	if r.code != 0 {
		t.Fatalf("machine show on a server without links: code %d, stderr %s", r.code, r.stderr)
	}
	if want := "Root link:      server default (the server did not report its root transport)\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("machine show lacks %q:\n%s", want, r.stdout)
	}
}

// TestMachineShow_history prints one line per attempt, refusals with
// their check, and quotes what the agent could have put escapes in.
func TestMachineShow_history(t *testing.T) {
	_, sock := serve(t)
	r := run(t, sock, "", "machine", "show", "bbbbbbbb2222")
	for _, want := range []string{
		"Boot history (last 2):\n",
		"  2026-03-04T05:06:07Z  needs-reapproval policy           from 10.0.0.6:4242 via sr-1 agent 0.3.0 41ms: boot state changed\n",
		"  2026-03-04T05:07:07Z  refused          event-log        from 10.0.0.6:4243 via sr-1 agent 0.3.0 12ms: \"PCR 15\\x1b[2J is not zero\"\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("machine show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = run(t, sock, "", "machine", "show", "web1")
	if !strings.Contains(r.stdout, "Boot history:   none\n") {
		t.Errorf("machine show of a machine without attempts:\n%s", r.stdout)
	}
}
