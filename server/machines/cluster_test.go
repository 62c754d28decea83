package machines

import (
	"context"
	"sync"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/wire"
)

// interleaving is a server's store that runs another server's change
// once, right after this server read the group it is about to change:
// after Group returns (past the first skip reads, which only check), or
// on the first call of UpdateGroup's fn.
type interleaving struct {
	store.Store
	skip      int
	once      sync.Once
	meanwhile func()
}

func (s *interleaving) Group(ctx context.Context, name string) (*store.Group, error) {
	g, err := s.Store.Group(ctx, name)
	if s.skip--; s.skip < 0 {
		s.once.Do(s.meanwhile)
	}
	return g, err
}

func (s *interleaving) UpdateGroup(ctx context.Context, name string, fn func(*store.Group, bool) error) (*store.Group, error) {
	return s.Store.UpdateGroup(ctx, name, func(g *store.Group, found bool) error {
		s.once.Do(s.meanwhile)
		return fn(g, found)
	})
}

// TestGroupChangesInterleaved: two servers share one etcd; server B sets
// a group's menu between server A reading the group and A storing its
// new root. A's `group set-root` keeps B's menu (it is decided inside the
// transaction that stores it), and the other way round B's root stays
// when A's menu change interleaves. A read-then-put would lose the
// change made in between.
func TestGroupChangesInterleaved(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	open := func() store.Store {
		s, err := store.NewEtcd(ctx, c.Client(), prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	stA, stB := open(), open()
	b := New(Config{Store: stB})
	none := wire.RootPlan{Kind: wire.RootNone}
	if _, err := b.SetGroupRoot(ctx, "lab", none); err != nil {
		t.Fatal(err)
	}
	lab := api.FileOwner{Group: "lab"}

	menu := api.Menu{LocalDisk: true, TimeoutMillis: 3000}
	a := New(Config{Store: &interleaving{Store: stA, meanwhile: func() {
		if _, err := b.SetMenu(ctx, lab, menu); err != nil {
			t.Errorf("server B's SetMenu: %v", err)
		}
	}}})
	newRoot := wire.RootPlan{Kind: wire.RootNone, Params: map[string]string{"note": "new"}}
	if _, err := a.SetGroupRoot(ctx, "lab", newRoot); err != nil {
		t.Fatalf("server A's SetGroupRoot: %v", err)
	}
	g, err := stB.Group(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if g.Menu == nil || !g.Menu.LocalDisk {
		t.Fatalf("group menu after an interleaved set-root = %+v, want server B's menu kept", g.Menu)
	}
	if g.Root.Params["note"] != "new" {
		t.Fatalf("group root = %+v, want server A's", g.Root)
	}

	// The other way round: A sets the menu, B changes the root meanwhile
	// (after A looked the group up and checked the root the menu needs).
	otherRoot := wire.RootPlan{Kind: wire.RootNone, Params: map[string]string{"note": "other"}}
	a = New(Config{Store: &interleaving{Store: stA, skip: 2, meanwhile: func() {
		if _, err := b.SetGroupRoot(ctx, "lab", otherRoot); err != nil {
			t.Errorf("server B's SetGroupRoot: %v", err)
		}
	}}})
	if _, err := a.SetMenu(ctx, lab, api.Menu{LocalDisk: true, TimeoutMillis: 5000}); err != nil {
		t.Fatalf("server A's SetMenu: %v", err)
	}
	g, err = stB.Group(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if g.Root.Params["note"] != "other" || g.Menu == nil || g.Menu.Timeout.Milliseconds() != 5000 {
		t.Fatalf("group after an interleaved menu change = root %+v menu %+v, want B's root and A's menu", g.Root, g.Menu)
	}
}
