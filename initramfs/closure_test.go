package initramfs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	testRoot = "testdata/modroot"
	testKver = "1.0-test"
)

func loadTestIndex(t *testing.T) *modIndex {
	t.Helper()
	ix, err := loadModIndex(testRoot, testKver)
	if err != nil {
		t.Fatalf("loadModIndex: %v", err)
	}
	return ix
}

func TestClosure(t *testing.T) {
	tests := []struct {
		name       string
		wanted     []string
		order      []string
		builtin    []string
		unresolved []string
	}{
		{
			name:   "hard_deps_first",
			wanted: []string{"virtio_net"},
			order:  []string{"failover", "net_failover", "virtio_net"},
			// modprobe ignores missing soft deps; Build reports them.
			unresolved: []string{"virtio_net: missing-thing"},
		},
		{
			name:   "softdep_alias_resolves_to_all_providers",
			wanted: []string{"ext4"},
			order:  []string{"crc32c_intel", "crc32c_generic", "crc16", "jbd2", "ext4"},
		},
		{
			name:   "wanted_by_alias",
			wanted: []string{"fs-ext4"},
			order:  []string{"crc32c_intel", "crc32c_generic", "crc16", "jbd2", "ext4"},
		},
		{
			name:   "softdep_by_module_name",
			wanted: []string{"r8169"},
			order:  []string{"realtek", "r8169"},
		},
		{
			name:   "wildcard_alias",
			wanted: []string{"pci:v000010ECd00008168sv00001234sd00005678bc02sc00i00"},
			order:  []string{"realtek", "r8169"},
		},
		{
			name:   "hyphen_name_and_compressed_files",
			wanted: []string{"crc32c-intel", "iscsi_tcp"},
			order:  []string{"crc32c_intel", "libiscsi", "iscsi_tcp"},
		},
		{
			name:    "builtin_by_name_and_alias",
			wanted:  []string{"crc32", "crypto-crc32", "crc32_generic"},
			builtin: []string{"crc32", "crypto-crc32", "crc32_generic"},
		},
		{
			name:   "softdep_cycle_terminates",
			wanted: []string{"a"},
			order:  []string{"b", "a"},
		},
		{
			name:   "duplicates_shipped_once",
			wanted: []string{"ext4", "jbd2", "crypto-crc32c"},
			order:  []string{"crc32c_intel", "crc32c_generic", "crc16", "jbd2", "ext4"},
		},
	}
	ix := loadTestIndex(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ix.closureOf(tt.wanted)
			if err != nil {
				t.Fatalf("closureOf(%q): %v", tt.wanted, err)
			}
			if !reflect.DeepEqual(c.order, tt.order) {
				t.Errorf("closureOf(%q) order = %q, want %q", tt.wanted, c.order, tt.order)
			}
			if !reflect.DeepEqual(c.builtin, tt.builtin) {
				t.Errorf("closureOf(%q) builtin = %q, want %q", tt.wanted, c.builtin, tt.builtin)
			}
			if !reflect.DeepEqual(c.unresolved, tt.unresolved) {
				t.Errorf("closureOf(%q) unresolved = %q, want %q", tt.wanted, c.unresolved, tt.unresolved)
			}
		})
	}
}

func TestClosureModuleNotFound(t *testing.T) {
	ix := loadTestIndex(t)
	_, err := ix.closureOf([]string{"ext4", "nosuch"})
	if !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("closureOf(nosuch) error = %v, want ErrModuleNotFound", err)
	}
}

func TestLoadModIndexNoModulesDep(t *testing.T) {
	_, err := loadModIndex(t.TempDir(), testKver)
	if !errors.Is(err, ErrNoModulesDep) {
		t.Errorf("loadModIndex(empty) error = %v, want ErrNoModulesDep", err)
	}
}

func TestTrimmedFiles(t *testing.T) {
	ix := loadTestIndex(t)
	c, err := ix.closureOf([]string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := ix.trimmedFiles(c)
	if err != nil {
		t.Fatalf("trimmedFiles: %v", err)
	}
	want := map[string]string{
		"modules.dep": "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko\n" +
			"kernel/fs/jbd2/jbd2.ko:\nkernel/lib/crc16.ko:\n" +
			"kernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\n",
		"modules.softdep": "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n",
		"modules.alias": "alias crypto-crc32c-intel crc32c_intel\nalias crypto-crc32c crc32c_intel\n" +
			"alias crypto-crc32c crc32c_generic\nalias fs-ext4 ext4\n",
		"modules.order": "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\nkernel/lib/crc16.ko\n" +
			"kernel/crypto/crc32c_generic.ko\nkernel/arch/x86/crypto/crc32c-intel.ko\n",
		"modules.builtin": "kernel/lib/crc32.ko\nkernel/crypto/crc32_generic.ko\n",
	}
	for name, w := range want {
		if got := string(files[name]); got != w {
			t.Errorf("trimmed %s =\n%s\nwant\n%s", name, got, w)
		}
	}
	if len(files) != len(want) {
		t.Errorf("trimmed files = %d, want %d", len(files), len(want))
	}
	// The trimmed index must describe exactly the shipped modules.
	dep := string(files["modules.dep"])
	for _, m := range c.order {
		if !strings.Contains(dep, ix.path[m]+":") {
			t.Errorf("trimmed modules.dep lacks shipped module %s", m)
		}
	}
}
