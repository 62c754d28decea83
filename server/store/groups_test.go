package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

// UpdateGroup creates (found false) or changes a group in one
// transaction: members get a new Version, an error from fn or a renamed
// group changes nothing, and concurrent updates all survive.
func TestUpdateGroup(t *testing.T) { forEachStore(t, testUpdateGroup) }

func testUpdateGroup(t *testing.T, db testStore) {
	ctx := context.Background()
	if _, err := db.UpdateGroup(ctx, "lab", func(g *Group, found bool) error {
		if found {
			return errors.New("found a group that does not exist")
		}
		return fmt.Errorf("refused: %w", ErrNotFound)
	}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateGroup refusing to create = %v, want ErrNotFound", err)
	}
	if _, err := db.Group(ctx, "lab"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused create stored the group: %v", err)
	}
	g, err := db.UpdateGroup(ctx, "lab", func(g *Group, found bool) error {
		g.Root = wire.RootPlan{Kind: wire.RootNone}
		return nil
	})
	if err != nil || g.Name != "lab" || g.Root.Kind != wire.RootNone {
		t.Fatalf("UpdateGroup creating = %+v, %v", g, err)
	}
	m := testMachine(1)
	m.Group = "lab"
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	before, _ := db.Machine(ctx, m.ID)
	if _, err := db.UpdateGroup(ctx, "lab", func(g *Group, found bool) error {
		if !found {
			return errors.New("the stored group was not found")
		}
		g.Menu = &Menu{LocalDisk: true, Default: wire.EntryLocalDiskID}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	after, _ := db.Machine(ctx, m.ID)
	if after.Version == before.Version {
		t.Errorf("member version %d unchanged by UpdateGroup", after.Version)
	}
	if _, err := db.UpdateGroup(ctx, "lab", func(g *Group, _ bool) error { g.Name = "other"; return nil }); err == nil {
		t.Error("UpdateGroup renaming the group succeeded")
	}
	if _, err := db.UpdateGroup(ctx, "bad/name", func(*Group, bool) error { return nil }); !errors.Is(err, ErrBadGroupName) {
		t.Errorf("UpdateGroup(bad name) = %v, want ErrBadGroupName", err)
	}
	if g, err := db.Group(ctx, "lab"); err != nil || g.Menu == nil || g.Root.Kind != wire.RootNone {
		t.Fatalf("group after updates = %+v, %v", g, err)
	}

	// Writers each adding an image to the menu at once: none is lost.
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = db.UpdateGroup(ctx, "lab", func(g *Group, _ bool) error {
				g.Menu.Images = append(slices.Clone(g.Menu.Images), fmt.Sprint("image-", i))
				return nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	g, err = db.Group(ctx, "lab")
	if err != nil || len(g.Menu.Images) != n {
		t.Fatalf("menu after %d concurrent updates = %v, %v; want all %d images", n, g.Menu.Images, err, n)
	}
}
