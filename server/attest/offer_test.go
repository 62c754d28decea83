package attest

import (
	"slices"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func TestOfferedMenu(t *testing.T) {
	volatile := wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "a"}}
	iscsi := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "b"}}
	menu := &store.Menu{Images: []string{"a", "b", "c"}, LocalDisk: true, Default: wire.EntryLocalDiskID, Timeout: 5 * time.Second}
	tests := []struct {
		name     string
		menu     *store.Menu
		root     wire.RootPlan
		firmware string
		want     []string // entry IDs; nil for no menu
		def      string
	}{
		{"no_menu", nil, volatile, "uefi", nil, ""},
		{"all_entries", menu, volatile, "uefi", []string{"image:a", "image:b", "image:c", "local-disk"}, "local-disk"},
		{"bios_no_local_disk_default_falls_back", menu, volatile, "bios", []string{"image:a", "image:b", "image:c"}, "image:a"},
		{"unknown_firmware_no_local_disk", menu, volatile, "", []string{"image:a", "image:b", "image:c"}, "image:a"},
		{"persistent_root_own_image_only", menu, iscsi, "uefi", []string{"image:b", "local-disk"}, "local-disk"},
		{"persistent_root_bios_one_entry", menu, iscsi, "bios", nil, ""},
		{"one_image", &store.Menu{Images: []string{"a"}, Default: "image:a"}, volatile, "uefi", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := offeredMenu(tt.menu, tt.root, tt.firmware)
			if tt.want == nil {
				if m != nil {
					t.Fatalf("offeredMenu = %+v, want no menu", m)
				}
				return
			}
			var ids []string
			for _, e := range m.Entries {
				ids = append(ids, e.ID)
			}
			if !slices.Equal(ids, tt.want) || m.Default != tt.def || m.TimeoutMillis != 5000 {
				t.Fatalf("offeredMenu = %v default %s %dms, want %v default %s 5000ms", ids, m.Default, m.TimeoutMillis, tt.want, tt.def)
			}
			if err := wire.CheckMenu(m); err != nil {
				t.Fatalf("offered menu does not validate: %v", err)
			}
		})
	}
}

// On a per-user root the image entry is the user login.
func TestOfferedMenuPerUser(t *testing.T) {
	root := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "desk", wire.PerUserParam: "true"}}
	m := offeredMenu(&store.Menu{Images: []string{"desk", "other"}, LocalDisk: true, Default: "image:desk", Timeout: time.Second}, root, "uefi")
	if m == nil || len(m.Entries) != 2 || m.Entries[0].Label != "desk (user login)" || m.Entries[1].ID != wire.EntryLocalDiskID {
		t.Fatalf("offeredMenu = %+v, want desk (user login) and the local disk", m)
	}
}

// An image entry's plan is the root with that image; the stored plan is
// not changed.
func TestWithImage(t *testing.T) {
	root := wire.RootPlan{Kind: wire.RootVolatile, Init: "/sbin/init", Params: map[string]string{wire.ImageParam: "a", wire.VolatileVia: wire.ViaISCSI}}
	got := withImage(root, "b")
	if got.Params[wire.ImageParam] != "b" || got.Params[wire.VolatileVia] != wire.ViaISCSI || got.Init != "/sbin/init" || got.Kind != wire.RootVolatile {
		t.Fatalf("withImage = %+v", got)
	}
	if root.Params[wire.ImageParam] != "a" {
		t.Fatalf("withImage changed the stored plan: %+v", root)
	}
}
