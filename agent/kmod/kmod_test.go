package kmod

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const testKVer = "6.1.0-test"

func testOpts(load func(string) error) Options {
	return Options{
		RootDir: "testdata/root",
		KVer:    testKVer,
		SysDir:  "testdata/root/sys",
		Load:    load,
	}
}

// recorder is an injected loader that records the load order.
type recorder struct {
	order []string
	fail  map[string]error
}

func (r *recorder) load(name string) error {
	r.order = append(r.order, name)
	return r.fail[name]
}

func failureModules(fs []Failure) []string {
	var names []string
	for _, f := range fs {
		names = append(names, f.Module)
	}
	return names
}

func TestLoadOrder(t *testing.T) {
	var r recorder
	res, err := Load(testOpts(r.load), []string{"ext4", "iscsi_tcp", "fs-ext4"})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	want := []string{
		"virtio_rng", "tpm", // preload, in file order; tpm is built in
		"crc32c_intel", "crc32c_generic", "ext4", // softdep crc32c via both aliases, then ext4
		"iscsi_tcp", // its softdep crc32c is already loaded; fs-ext4 = ext4, done
		"e1000e",    // PCI network controller 0000:00:02.0; the display controller is skipped
	}
	if !slices.Equal(r.order, want) {
		t.Errorf("load order = %v, want %v", r.order, want)
	}
	if !slices.Equal(res.Loaded, want) {
		t.Errorf("Result.Loaded = %v, want %v", res.Loaded, want)
	}
	if got, want := failureModules(res.Warnings), []string{"absent_mod", "missing_mod"}; !slices.Equal(got, want) {
		t.Errorf("warnings = %v, want %v", got, want)
	}
	for _, w := range res.Warnings {
		if !errors.Is(w.Err, ErrNotFound) {
			t.Errorf("warning %v does not wrap ErrNotFound", w)
		}
	}
}

func TestLoadRequiredFailures(t *testing.T) {
	injected := errors.New("init_module: exec format error")
	tests := []struct {
		name     string
		required []string
		fail     map[string]error
		wantErr  error
	}{
		{name: "missing_required", required: []string{"nosuch"}, wantErr: ErrNotFound},
		{name: "loader_fails_required", required: []string{"iscsi_tcp"}, fail: map[string]error{"iscsi_tcp": injected}, wantErr: injected},
		{name: "all_alias_targets_fail", required: []string{"crc32c"},
			fail: map[string]error{"crc32c_intel": injected, "crc32c_generic": injected}, wantErr: injected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := recorder{fail: tt.fail}
			res, err := Load(testOpts(r.load), tt.required)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load(%v) error = %v, want %v", tt.required, err, tt.wantErr)
			}
			if got := failureModules(res.Failed); !slices.Equal(got, tt.required) {
				t.Errorf("Result.Failed = %v, want %v", got, tt.required)
			}
		})
	}
}

func TestLoadOptionalFailureIsWarning(t *testing.T) {
	r := recorder{fail: map[string]error{"e1000e": errors.New("no such device")}}
	res, err := Load(testOpts(r.load), nil)
	if err != nil {
		t.Fatalf("Load() with a failing NIC driver = %v, want nil (optional)", err)
	}
	if !slices.Contains(failureModules(res.Warnings), "e1000e") {
		t.Errorf("warnings = %v, want e1000e among them", res.Warnings)
	}
}

func TestAliasOneOfTwoLoads(t *testing.T) {
	r := recorder{fail: map[string]error{"crc32c_intel": errors.New("no SSE4.2")}}
	if _, err := Load(testOpts(r.load), []string{"crc32c"}); err != nil {
		t.Fatalf("Load(crc32c) with crc32c_generic loadable = %v, want nil", err)
	}
}

// TestClosureDryRun runs the default prober in dry-run mode: it must load
// each module's modules.dep closure before the module, each file once.
func TestClosureDryRun(t *testing.T) {
	var mu sync.Mutex
	var files []string
	opts := testOpts(nil)
	opts.DryRun = func(path string) {
		mu.Lock()
		defer mu.Unlock()
		files = append(files, normalize(path))
	}
	if _, err := Load(opts, []string{"iscsi_tcp"}); err != nil {
		t.Fatalf("Load() = %v", err)
	}
	pos := map[string]int{}
	for i, f := range files {
		if _, dup := pos[f]; dup {
			t.Errorf("%s loaded twice: %v", f, files)
		}
		pos[f] = i
	}
	before := [][2]string{
		{"virtio_ring", "virtio"}, {"virtio", "virtio_rng"},
		{"scsi_transport_iscsi", "libiscsi"}, {"libiscsi", "libiscsi_tcp"}, {"libiscsi_tcp", "iscsi_tcp"},
		{"crc32c_generic", "iscsi_tcp"}, {"virtio_rng", "iscsi_tcp"}, {"iscsi_tcp", "e1000e"},
	}
	for _, b := range before {
		i, ok1 := pos[b[0]]
		j, ok2 := pos[b[1]]
		if !ok1 || !ok2 || i > j {
			t.Errorf("want %s loaded before %s; order: %s", b[0], b[1], strings.Join(files, " "))
		}
	}
	if _, ok := pos["tpm"]; ok {
		t.Errorf("built-in tpm was loaded: %v", files)
	}
}

func TestMissingModulesDep(t *testing.T) {
	opts := testOpts(func(string) error { return nil })
	opts.RootDir = t.TempDir()
	if res, err := Load(opts, nil); err != nil || len(res.Loaded) != 0 {
		t.Errorf("Load(nothing required) without modules.dep = %v, %v; want an empty result", res, err)
	}
	if _, err := Load(opts, []string{"e1000e"}); err == nil || !strings.Contains(err.Error(), filepath.Join("lib/modules", testKVer, "modules.dep")) {
		t.Fatalf("Load(e1000e) without modules.dep = %v, want an error naming modules.dep", err)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kernel/arch/x86/crypto/crc32c-intel.ko", "crc32c_intel"},
		{"virtio-rng", "virtio_rng"},
		{"kernel/fs/ext4/ext4.ko.zst", "ext4"},
		{"e1000e", "e1000e"},
	}
	for _, tt := range tests {
		if got := normalize(tt.in); got != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMixedNameDryRun loads a module whose file name mixes '-' and '_'
// (chacha-x86_64.ko), which u-root's kmodule could not find by name: its
// dependency must load first, then its file.
func TestMixedNameDryRun(t *testing.T) {
	var files []string
	opts := testOpts(nil)
	opts.DryRun = func(path string) { files = append(files, path) }
	res, err := Load(opts, []string{"chacha_x86_64", "chacha-x86_64"})
	if err != nil {
		t.Fatalf("Load(chacha_x86_64) = %v", err)
	}
	dir := filepath.Join("testdata/root/lib/modules", testKVer)
	lib := slices.Index(files, filepath.Join(dir, "kernel/lib/crypto/libchacha.ko"))
	mod := slices.Index(files, filepath.Join(dir, "kernel/arch/x86/crypto/chacha-x86_64.ko"))
	if lib < 0 || mod < 0 || lib > mod {
		t.Errorf("want libchacha.ko, then chacha-x86_64.ko loaded; got %v", files)
	}
	if n := strings.Count(strings.Join(files, " "), "chacha-x86_64.ko"); n != 1 {
		t.Errorf("chacha-x86_64.ko loaded %d times, want once: %v", n, files)
	}
	if !slices.Contains(res.Loaded, "chacha_x86_64") {
		t.Errorf("Result.Loaded = %v, want chacha_x86_64", res.Loaded)
	}
}
