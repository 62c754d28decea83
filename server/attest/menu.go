package attest

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// A boot menu is one more step of an allowed exchange: instead of the
// credential the server sends the Menu it computed from the machine's
// record (offeredMenu) and keeps it in the exchange, which waits for the
// person at the console without holding an exchange slot (askPerson); the agent's Choice
// is honoured only if it names an entry of that menu. An image entry
// releases the credential for the machine's root with the chosen image
// (checked again against the current record, as every release); the
// local disk answers a Status of state local-disk. A choice that was not
// offered is refused and audited (check "menu-choice").

// checkMenuChoice names the refusal of a choice that was not offered.
const checkMenuChoice = "menu-choice"

// allowed is the judged state kept while the agent chooses.
type allowed struct {
	observed *store.BootState
	info     *evidence.QuoteInfo
	verdict  policy.Verdict
}

// offeredMenu is the menu a machine whose root plan is root and whose
// firmware is as hinted gets from menu sm, or nil when it offers fewer
// than two entries (then the boot goes on unchanged). An image entry
// boots root with that image; a persistent root (iscsi, nfs) stays on the
// image it was made from, so it offers only its own image. The local disk
// is offered to UEFI machines only: BIOS has no BootNext. On a per-user
// root the image entry is the user login: choosing it asks for a login
// (perUser), whose user's root over the image the release prepares.
func offeredMenu(sm *store.Menu, root wire.RootPlan, firmware string) *wire.Menu {
	if sm == nil {
		return nil
	}
	var entries []wire.MenuEntry
	for _, name := range sm.Images {
		if root.Kind != wire.RootVolatile && name != root.Params[wire.ImageParam] {
			continue
		}
		label := name
		if root.Params[wire.PerUserParam] == "true" {
			label += " (user login)" // the choice hands over to the login (login.go)
		}
		entries = append(entries, wire.MenuEntry{ID: wire.ImageEntryID(name), Kind: wire.EntryImage, Label: label})
	}
	if sm.LocalDisk && firmware == "uefi" {
		entries = append(entries, wire.MenuEntry{ID: wire.EntryLocalDiskID, Kind: wire.EntryLocalDisk, Label: "local disk"})
	}
	if len(entries) < 2 {
		return nil
	}
	m := &wire.Menu{Entries: entries, Default: sm.Default, TimeoutMillis: sm.Timeout.Milliseconds(),
		NoLocalDisk: sm.LocalDisk && firmware != "uefi"}
	if m.Entry(m.Default) == nil {
		m.Default = entries[0].ID
	}
	return m
}

// withImage is root booting image name instead of its own.
func withImage(root wire.RootPlan, name string) wire.RootPlan {
	params := maps.Clone(root.Params)
	if params == nil {
		params = map[string]string{}
	}
	params[wire.ImageParam] = name
	return wire.RootPlan{Kind: root.Kind, Init: root.Init, Params: params}
}

// offer returns the menu to send an allowed machine, or nil to release
// its credential now.
func (x *exchange) offer(ctx context.Context, a *allowed) (*wire.Menu, error) {
	sm, err := store.EffectiveMenu(ctx, x.s.store, x.machine)
	if err != nil || sm == nil {
		return nil, failIf("menu", err)
	}
	root, err := store.EffectiveRoot(ctx, x.s.store, x.machine)
	if err != nil {
		return nil, fail("root", err)
	}
	m := offeredMenu(sm, root, x.hello.Hints.Firmware)
	if m == nil {
		return nil, nil
	}
	// The agent takes the default at the timeout; the server must still
	// be waiting then.
	wait := x.s.limits.PersonTimeout - x.s.limits.FrameTimeout
	m.TimeoutMillis = max(min(m.TimeoutMillis, wait.Milliseconds()), 1000)
	if err := wire.CheckMenu(m); err != nil {
		return nil, fail("menu", err)
	}
	x.menu, x.menuRoot, x.allowed = m, root, a
	x.s.logger.Info("boot menu offered", "machine", x.machineID, "entries", len(m.Entries), "default", m.Default)
	return m, nil
}

func failIf(check string, err error) error {
	if err == nil {
		return nil
	}
	return fail(check, err)
}

// askMenu sends the menu and waits for the person at the console
// (askPerson: the exchange holds no slot meanwhile), then honours the
// choice.
func (x *exchange) askMenu(ctx context.Context, m *wire.Menu) (wire.Message, error) {
	ans, err := x.askPerson(ctx, m)
	if err != nil {
		return nil, err
	}
	c, ok := ans.(*wire.Choice)
	if !ok {
		return nil, fail("protocol", fmt.Errorf("expected choice, got %v", ans.Type()))
	}
	return x.choose(ctx, c)
}

// choose honours the agent's choice if it was offered.
func (x *exchange) choose(ctx context.Context, c *wire.Choice) (wire.Message, error) {
	e := x.menu.Entry(c.ID)
	if e == nil {
		return nil, &Failure{Check: checkMenuChoice, Reason: fmt.Sprintf("menu entry %q was not offered", c.ID)}
	}
	switch e.Kind {
	case wire.EntryLocalDisk:
		if err := x.current(ctx); err != nil {
			return nil, err
		}
		x.s.withdraw(x.machineID) // it boots its disk: no root or tunnel of the last boot stays
		if err := auditFailure(x.s.record(x, "local-disk", "menu", "chose the local disk")); err != nil {
			return nil, err
		}
		return &wire.Status{State: wire.StateLocalDisk, MachineID: x.machineID, Reason: "booting the local disk"}, nil
	case wire.EntryImage:
		plan := withImage(x.menuRoot, strings.TrimPrefix(e.ID, wire.EntryImage+":"))
		x.chosen = &plan
		v := x.allowed.verdict
		v.Reason += "; menu: " + e.ID
		return x.release(ctx, x.allowed.observed, x.allowed.info, v)
	}
	return nil, &Failure{Check: checkMenuChoice, Reason: fmt.Sprintf("menu entry %q of kind %q", e.ID, e.Kind)}
}
