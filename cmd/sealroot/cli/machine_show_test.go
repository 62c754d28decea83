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
