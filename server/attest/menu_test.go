package attest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

var volatileRoot = wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "debian"}}

// setMenu gives machine id root and menu, straight in the store.
func (e *testEnv) setMenu(t *testing.T, id string, root wire.RootPlan, menu *store.Menu) {
	t.Helper()
	_, err := e.db.UpdateMachine(context.Background(), id, func(m *store.Machine) error {
		m.Root, m.Menu = root, menu
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// menuClient is an agent on UEFI firmware whose console answers the
// menu with choose, recording the menus it was shown.
func (e *testEnv) menuClient(t *testing.T, m *testMachine, firmware string, shown *[]*wire.Menu, choose func(*wire.Menu) string) *agentattest.Client {
	return e.client(t, m.dev, func(c *agentattest.Config) {
		c.Hints.Firmware = firmware
		c.Choose = func(_ context.Context, menu *wire.Menu) (string, error) {
			*shown = append(*shown, menu)
			return choose(menu), nil
		}
	})
}

func pick(id string) func(*wire.Menu) string { return func(*wire.Menu) string { return id } }

// TestBootMenu: a machine with a menu of two images and the local disk
// attests for real; each offered choice is honoured (the credential's
// root is the chosen image; the local disk is a local-disk status,
// audited), a choice that was not offered is refused and audited, and
// a menu changed while the person chooses refuses the old choice.
func TestBootMenu(t *testing.T) {
	e := newEnv(t)
	menu := &store.Menu{Images: []string{"debian", "alpine"}, LocalDisk: true, Default: wire.ImageEntryID("alpine"), Timeout: 3 * time.Second}
	// One simulator at a time, one boot each: a machine per subtest.
	machine := func(t *testing.T) *testMachine {
		m := newMachine(t, defaultSpec)
		e.enrollAndApprove(t, m, "")
		e.setMenu(t, m.id, volatileRoot, menu)
		return m
	}

	t.Run("default_image", func(t *testing.T) {
		m := machine(t)
		var shown []*wire.Menu
		res, err := attestOnce(t, e.menuClient(t, m, "uefi", &shown, func(mn *wire.Menu) string { return mn.Default }))
		if err != nil {
			t.Fatalf("attest: %v", err)
		}
		if len(shown) != 1 || len(shown[0].Entries) != 3 || shown[0].Default != wire.ImageEntryID("alpine") || shown[0].TimeoutMillis != 3000 {
			t.Fatalf("menu shown = %+v, want 3 entries, default alpine, 3s", shown)
		}
		if got := res.Payload.Root; got.Kind != wire.RootVolatile || got.Params[wire.ImageParam] != "alpine" {
			t.Fatalf("root = %+v, want volatile over alpine", got)
		}
		if a := e.lastAudit(t, m.id); a.Outcome != "allowed" {
			t.Fatalf("audit = %+v, want allowed", a)
		}
	})
	t.Run("other_image", func(t *testing.T) {
		m := machine(t)
		var shown []*wire.Menu
		res, err := attestOnce(t, e.menuClient(t, m, "uefi", &shown, pick(wire.ImageEntryID("debian"))))
		if err != nil {
			t.Fatalf("attest: %v", err)
		}
		if got := res.Payload.Root.Params[wire.ImageParam]; got != "debian" {
			t.Fatalf("root image = %q, want debian", got)
		}
	})
	t.Run("local_disk", func(t *testing.T) {
		m := machine(t)
		var shown []*wire.Menu
		_, err := attestOnce(t, e.menuClient(t, m, "uefi", &shown, pick(wire.EntryLocalDiskID)))
		if !errors.Is(err, agentattest.ErrLocalDisk) {
			t.Fatalf("attest = %v, want ErrLocalDisk", err)
		}
		if a := e.lastAudit(t, m.id); a.Outcome != "local-disk" || a.Check != "menu" {
			t.Fatalf("audit = %+v, want outcome local-disk, check menu", a)
		}
	})
	for i, id := range []string{wire.ImageEntryID("secret-image"), "image:", "local-disk-2"} {
		t.Run(fmt.Sprintf("not_offered_refused_%d", i), func(t *testing.T) {
			m := machine(t)
			var shown []*wire.Menu
			_, err := attestOnce(t, e.menuClient(t, m, "uefi", &shown, pick(id)))
			e.wantRefused(t, err, m.id, "menu-choice")
			if a := e.lastAudit(t, m.id); a.Reason != "menu entry \""+id+"\" was not offered" {
				t.Fatalf("audited reason %q", a.Reason)
			}
		})
	}
	t.Run("bios_no_local_disk", func(t *testing.T) {
		m := machine(t)
		var shown []*wire.Menu
		_, err := attestOnce(t, e.menuClient(t, m, "bios", &shown, pick(wire.EntryLocalDiskID)))
		e.wantRefused(t, err, m.id, "menu-choice")
		if len(shown) != 1 || len(shown[0].Entries) != 2 || shown[0].Entry(wire.EntryLocalDiskID) != nil || !shown[0].NoLocalDisk {
			t.Fatalf("BIOS machine was shown %+v, want the two images only", shown)
		}
	})
	t.Run("person_holds_no_slot", func(t *testing.T) {
		m := machine(t)
		var shown []*wire.Menu
		var inFlight, waiting int
		_, err := attestOnce(t, e.menuClient(t, m, "uefi", &shown, func(mn *wire.Menu) string {
			inFlight, waiting = e.srv.InFlight(), e.srv.Waiting()
			return mn.Default
		}))
		if err != nil {
			t.Fatalf("attest: %v", err)
		}
		if inFlight != 0 || waiting != 1 {
			t.Fatalf("while the menu was shown: %d exchanges in flight, %d waiting; want 0 and 1", inFlight, waiting)
		}
	})
	t.Run("menu_changed_while_choosing", func(t *testing.T) {
		m := machine(t)
		var shown []*wire.Menu
		_, err := attestOnce(t, e.menuClient(t, m, "uefi", &shown, func(*wire.Menu) string {
			e.setMenu(t, m.id, volatileRoot, &store.Menu{Images: []string{"debian", "other"}, Default: wire.ImageEntryID("debian"), Timeout: time.Second})
			return wire.ImageEntryID("alpine")
		}))
		e.wantRefused(t, err, m.id, "stale-record")
	})
}

// TestOneEntryNoMenu: with one entry to offer, the boot is unchanged:
// no menu, the credential for the machine's own root.
func TestOneEntryNoMenu(t *testing.T) {
	e := newEnv(t)
	iscsi := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}}
	for _, tc := range []struct {
		name     string
		root     wire.RootPlan
		menu     *store.Menu
		firmware string
	}{
		{"no_menu", volatileRoot, nil, "uefi"},
		{"one_image", volatileRoot, &store.Menu{Images: []string{"debian"}, Default: "image:debian", Timeout: time.Second}, "uefi"},
		{"local_disk_on_bios", volatileRoot, &store.Menu{Images: []string{"debian"}, LocalDisk: true, Default: "local-disk", Timeout: time.Second}, "bios"},
		// A persistent root stays on its own image: the others are not offered.
		{"persistent_root", iscsi, &store.Menu{Images: []string{"alpine", "debian"}, Default: "image:alpine", Timeout: time.Second}, "uefi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, defaultSpec)
			e.enrollAndApprove(t, m, "")
			e.setMenu(t, m.id, tc.root, tc.menu)
			var shown []*wire.Menu
			res, err := attestOnce(t, e.menuClient(t, m, tc.firmware, &shown, pick("none")))
			if err != nil {
				t.Fatalf("attest: %v", err)
			}
			if len(shown) != 0 {
				t.Fatalf("menu shown: %+v", shown[0])
			}
			if got := res.Payload.Root; got.Kind != tc.root.Kind || got.Params[wire.ImageParam] != "debian" {
				t.Fatalf("root = %+v, want %+v", got, tc.root)
			}
		})
	}
}
