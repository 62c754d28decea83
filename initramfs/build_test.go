package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	"github.com/ulikunitz/xz"

	"github.com/sealroot/sealroot/initramfs/preload"
)

// testAgentOnce builds testdata/hello once per test binary.
var testAgentOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "initramfs-agent-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "hello")
	return out, BuildAgent(context.Background(), "./testdata/hello", out)
})

func testAgent(t *testing.T) string {
	t.Helper()
	p, err := testAgentOnce()
	if err != nil {
		t.Fatalf("BuildAgent: %v", err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if p, err := testAgentOnce(); err == nil {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

const testAgentConfig = `{"servers":["192.0.2.1:4433"],"ca_pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`

func testOptions(t *testing.T) Options {
	return Options{
		AgentBinary:   testAgent(t),
		ModulesRoot:   testRoot,
		KernelVersion: testKver,
		Modules:       []string{"virtio_net", "ext4", "iscsi_tcp", "crc32"},
		AgentConfig:   []byte(testAgentConfig),
	}
}

func build(t *testing.T, opts Options) ([]byte, *Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Build(context.Background(), opts, &buf)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes(), res
}

// readArchive decompresses and parses an initramfs with u-root's reader.
func readArchive(t *testing.T, compression string, b []byte) []cpio.Record {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	var err error
	if compression == "" {
		compression = DefaultCompression
	}
	switch compression {
	case "gzip":
		r, err = gzip.NewReader(r)
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(r)
		r = d
	case "xz":
		r, err = xz.NewReader(r)
	}
	if err != nil {
		t.Fatalf("decompress %s: %v", compression, err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", compression, err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	return recs
}

func content(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatalf("read %s: %v", r.Name, err)
	}
	return b
}

func TestBuildLayout(t *testing.T) {
	opts := testOptions(t)
	b, res := build(t, opts)
	recs := readArchive(t, DefaultCompression, b)
	byName := map[string]cpio.Record{}
	var names []string
	for _, r := range recs {
		if r.UID != 0 || r.GID != 0 || r.MTime != 0 {
			t.Errorf("%s: uid %d gid %d mtime %d, want 0", r.Name, r.UID, r.GID, r.MTime)
		}
		if _, ok := byName[path.Dir(r.Name)]; !ok && r.Name != "." {
			t.Errorf("%s precedes its parent directory", r.Name)
		}
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("records not sorted: %q", names)
	}
	want := []struct {
		name           string
		mode           uint64
		rmajor, rminor uint64
	}{
		{".", cpio.S_IFDIR | 0o755, 0, 0},
		{"init", cpio.S_IFREG | 0o755, 0, 0},
		{"dev/console", cpio.S_IFCHR | 0o600, 5, 1},
		{"dev/null", cpio.S_IFCHR | 0o666, 1, 3},
		{"tmp", cpio.S_IFDIR | 0o1777, 0, 0},
		{"etc/sealroot/agent.json", cpio.S_IFREG | 0o444, 0, 0},
		{"lib/modules/1.0-test/kernel/fs/ext4/ext4.ko", cpio.S_IFREG | 0o644, 0, 0},
		{"lib/modules/1.0-test/kernel/drivers/scsi/libiscsi.ko.zst", cpio.S_IFREG | 0o644, 0, 0},
	}
	for _, w := range want {
		r, ok := byName[w.name]
		if !ok {
			t.Errorf("archive lacks %s", w.name)
			continue
		}
		if r.Mode != w.mode || r.Rmajor != w.rmajor || r.Rminor != w.rminor {
			t.Errorf("%s: mode %o dev %d,%d, want %o %d,%d", w.name, r.Mode, r.Rmajor, r.Rminor, w.mode, w.rmajor, w.rminor)
		}
	}
	agent, _ := os.ReadFile(opts.AgentBinary)
	if got := content(t, byName["init"]); !bytes.Equal(got, agent) {
		t.Errorf("/init: %d bytes differ from the agent (%d bytes)", len(got), len(agent))
	}
	if got := string(content(t, byName[AgentConfigPath])); got != testAgentConfig {
		t.Errorf("%s = %q, want %q", AgentConfigPath, got, testAgentConfig)
	}
	if _, ok := byName["lib/modules/1.0-test/kernel/unused/big.ko"]; ok {
		t.Errorf("archive ships unwanted module big.ko")
	}
	checkPreload(t, byName, res)
}

// checkPreload checks that sealroot.preload lists the shipped modules in
// Result order and that every listed path is in the archive.
func checkPreload(t *testing.T, byName map[string]cpio.Record, res *Result) {
	t.Helper()
	dir := "lib/modules/1.0-test/"
	pl, ok := byName[dir+preload.FileName]
	if !ok {
		t.Fatalf("archive lacks %s", preload.FileName)
	}
	entries, err := preload.Parse(bytes.NewReader(content(t, pl)))
	if err != nil {
		t.Fatalf("preload.Parse: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if _, ok := byName[dir+e.Path]; !ok {
			t.Errorf("preload lists %s, not in archive", e.Path)
		}
	}
	wantOrder := []string{"failover", "net_failover", "virtio_net", "crc32c_intel", "crc32c_generic",
		"crc16", "jbd2", "ext4", "libiscsi", "iscsi_tcp"}
	if !reflect.DeepEqual(names, wantOrder) || !reflect.DeepEqual(res.Modules, wantOrder) {
		t.Errorf("preload = %q, Result.Modules = %q, want %q", names, res.Modules, wantOrder)
	}
	if !reflect.DeepEqual(res.Builtin, []string{"crc32"}) {
		t.Errorf("Result.Builtin = %q, want [crc32]", res.Builtin)
	}
}

func TestBuildReproducible(t *testing.T) {
	var plain []cpio.Record
	for _, comp := range []string{"none", "gzip", "zstd", "xz"} {
		t.Run(comp, func(t *testing.T) {
			opts := testOptions(t)
			opts.Compression = comp
			b1, r1 := build(t, opts)
			b2, r2 := build(t, opts)
			sum := sha256.Sum256(b1)
			if !bytes.Equal(b1, b2) || r1.SHA256 != r2.SHA256 || r1.SHA256 != hex.EncodeToString(sum[:]) {
				t.Fatalf("two builds differ: %s vs %s (%d vs %d bytes)", r1.SHA256, r2.SHA256, len(b1), len(b2))
			}
			if r1.Bytes != int64(len(b1)) {
				t.Errorf("Result.Bytes = %d, wrote %d", r1.Bytes, len(b1))
			}
			recs := readArchive(t, comp, b1)
			if plain == nil {
				plain = recs
			} else if !cpio.AllEqual(recs, plain) {
				t.Errorf("%s archive content differs from uncompressed archive", comp)
			}
			t.Logf("%s: %d bytes (cpio %d), sha256 %s", comp, r1.Bytes, r1.CPIOBytes, r1.SHA256)
		})
	}
}

func TestBuildWithoutModules(t *testing.T) {
	opts := Options{AgentBinary: testAgent(t)}
	b, res := build(t, opts)
	for _, r := range readArchive(t, DefaultCompression, b) {
		if r.Name == "lib" || r.Name == AgentConfigPath {
			t.Errorf("archive without modules or config has %s", r.Name)
		}
	}
	if len(res.Modules) != 0 {
		t.Errorf("Result.Modules = %q, want none", res.Modules)
	}
}

func TestBuildErrors(t *testing.T) {
	dynamic := "/bin/true" // dynamically linked on Debian
	text := filepath.Join(t.TempDir(), "agent.sh")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	tests := []struct {
		name   string
		modify func(*Options)
		want   error
	}{
		{"dynamic_agent", func(o *Options) { o.AgentBinary = dynamic }, ErrAgentNotStatic},
		{"script_agent", func(o *Options) { o.AgentBinary = text }, ErrAgentNotStatic},
		{"missing_module", func(o *Options) { o.Modules = []string{"nosuch"} }, ErrModuleNotFound},
		{"no_modules_dep", func(o *Options) { o.ModulesRoot = t.TempDir() }, ErrNoModulesDep},
		{"unknown_compression", func(o *Options) { o.Compression = "lz4" }, ErrUnknownCompression},
		{"private_key", func(o *Options) {
			o.AgentConfig = []byte(`{"key":"-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n"}`)
		}, ErrSecretInConfig},
		{"password_field", func(o *Options) { o.AgentConfig = []byte(`{"iscsi":{"chap_password":"x"}}`) }, ErrSecretInConfig},
		{"config_not_json", func(o *Options) { o.AgentConfig = []byte(`servers = 1`) }, ErrBadAgentConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			tt.modify(&opts)
			var buf bytes.Buffer
			_, err := Build(context.Background(), opts, &buf)
			if !errors.Is(err, tt.want) {
				t.Errorf("Build error = %v, want %v", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Build wrote %d bytes despite the error", buf.Len())
			}
		})
	}
}

// With a first stage, it is /init and the agent moves to AgentPath.
func TestBuildWithFirstStage(t *testing.T) {
	opts := testOptions(t)
	opts.InitBinary = testAgent(t) // any static binary will do
	b, _ := build(t, opts)
	byName := map[string]cpio.Record{}
	for _, r := range readArchive(t, DefaultCompression, b) {
		byName[r.Name] = r
	}
	for _, name := range []string{"init", AgentPath} {
		r, ok := byName[name]
		if !ok || r.Mode != cpio.S_IFREG|0o755 {
			t.Errorf("%s: present %v mode %o, want an executable file", name, ok, r.Mode)
		}
	}
	opts.InitBinary = "/etc/hostname"
	if _, err := Build(context.Background(), opts, io.Discard); !errors.Is(err, ErrAgentNotStatic) {
		t.Errorf("Build with a non-ELF first stage = %v, want ErrAgentNotStatic", err)
	}
}
