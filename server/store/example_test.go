package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sealroot/sealroot/server/store"
)

func ExampleDB_UpdateMachine() {
	dir, _ := os.MkdirTemp("", "sealroot-example")
	defer os.RemoveAll(dir)
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateMachine(ctx, &store.Machine{ID: "6b86b273", Name: "web-1", State: store.StatePending}); err != nil {
		fmt.Println(err)
		return
	}
	// fn may run more than once: it only changes its argument.
	m, err := db.UpdateMachine(ctx, "6b86b273", func(m *store.Machine) error {
		m.BootCount++
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Name, m.BootCount)
	// Output: web-1 1
}
