package provision

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
		t.Errorf("owner of %s = %d:%d, want 0:0", path, st.Uid, st.Gid)
	}
}

func TestPlaceSecrets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "sealroot", "secrets")
	secrets := map[string][]byte{
		"api-token":           []byte("s3cret\n"),
		"db.password":         []byte("pw"),
		wire.SecretCHAPSecret: []byte("chap"),
		wire.SecretCHAPUser:   []byte("user"),
	}
	names, err := PlaceSecrets(dir, secrets, false)
	if err != nil {
		t.Fatalf("PlaceSecrets: %v", err)
	}
	if want := []string{"api-token", "db.password"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("PlaceSecrets placed %v, want %v", names, want)
	}
	checkMode(t, dir, fs.ModeDir|0o700)
	for _, n := range names {
		p := filepath.Join(dir, n)
		checkMode(t, p, 0o400)
		if got, _ := os.ReadFile(p); !bytes.Equal(got, secrets[n]) {
			t.Errorf("content of %s = %q, want %q", n, got, secrets[n])
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("secrets dir holds %d entries, want 2 (root secrets must not be handed on)", len(ents))
	}
}

func TestPlaceSecretsRefusesBadNames(t *testing.T) {
	for _, name := range []string{"..", ".", "a/b", "", "x y", strings.Repeat("a", 65)} {
		dir := filepath.Join(t.TempDir(), "secrets")
		_, err := PlaceSecrets(dir, map[string][]byte{name: []byte("v")}, false)
		if !errors.Is(err, ErrBadSecretName) {
			t.Errorf("PlaceSecrets(%q) = %v, want ErrBadSecretName", name, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("PlaceSecrets(%q) created %s before refusing", name, dir)
		}
	}
}

func TestPlaceSecretsNoneCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	if _, err := PlaceSecrets(dir, map[string][]byte{wire.SecretCHAPUser: []byte("u")}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s = %v, want not exist", dir, err)
	}
}

// TestPlaceSecretsTmpfs: the secrets live in a read-only tmpfs, so
// nothing reaches the disk below and the booted system cannot add to it.
func TestPlaceSecretsTmpfs(t *testing.T) {
	testenv.RequireRoot(t, "mounts a tmpfs")
	parent := t.TempDir()
	dir := filepath.Join(parent, "secrets")
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if _, err := PlaceSecrets(dir, map[string][]byte{"k": []byte("v")}, true); err != nil {
		t.Fatalf("PlaceSecrets: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Errorf("file system type of %s = %#x, want tmpfs", dir, st.Type)
	}
	if st.Flags&unix.ST_RDONLY == 0 || st.Flags&unix.ST_NOEXEC == 0 || st.Flags&unix.ST_NOSUID == 0 {
		t.Errorf("mount flags of %s = %#x, want read-only, noexec, nosuid", dir, st.Flags)
	}
	checkMode(t, dir, fs.ModeDir|0o700)
	checkMode(t, filepath.Join(dir, "k"), 0o400)
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing into the secrets tmpfs = %v, want EROFS", err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the directory under the tmpfs holds %d entries, want none", len(ents))
	}
}

func TestHostname(t *testing.T) {
	tests := []struct {
		name, etcHostname, machine string
		wantName                   string
		wantSet                    bool
		wantErr                    string
	}{
		{"no_file", "-", "node-1", "node-1", true, ""},
		{"empty_file", "", "node-1", "node-1", true, ""},
		{"comments_only", "# set by sealroot\n\n", "node-1", "node-1", true, ""},
		{"image_sets_one", "kiosk\n", "node-1", "kiosk", false, ""},
		{"bad_machine_name", "-", "bad_name", "", false, "not a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.etcHostname != "-" {
				os.MkdirAll(filepath.Join(root, "etc"), 0o755)
				os.WriteFile(filepath.Join(root, "etc/hostname"), []byte(tt.etcHostname), 0o644)
			}
			var set string
			name, fromMachine, err := Hostname(root, tt.machine, func(b []byte) error { set = string(b); return nil })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Hostname = %v, want error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || name != tt.wantName || fromMachine != tt.wantSet {
				t.Fatalf("Hostname = %q, %v, %v; want %q, %v", name, fromMachine, err, tt.wantName, tt.wantSet)
			}
			if tt.wantSet != (set == tt.machine) {
				t.Errorf("sethostname called with %q", set)
			}
		})
	}
}

// TestImageHostnameSymlinkStaysInRoot: an absolute symlink in the image
// resolves inside the root, not in the initramfs.
func TestImageHostnameSymlinkStaysInRoot(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "hn"), []byte("inside\n"), 0o644)
	os.Symlink("/hn", filepath.Join(root, "etc/hostname"))
	if got, err := ImageHostname(root); err != nil || got != "inside" {
		t.Fatalf("ImageHostname = %q, %v; want inside", got, err)
	}
}

func TestWriteFiles(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	// A symlink in the image pointing out of the root: must be replaced,
	// not followed.
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(root, "etc/motd"))
	// A directory symlink with an absolute target resolves inside the root.
	os.MkdirAll(filepath.Join(root, "usr/lib/app"), 0o755)
	os.Symlink("/usr/lib/app", filepath.Join(root, "etc/app"))
	files := []wire.File{
		{Path: "/etc/motd", Mode: 0o644, Content: []byte("hello node-1\n")},
		{Path: "/etc/app/app.conf", Mode: 0o640, UID: 0, GID: 0, Content: []byte("x=1")},
		{Path: "/opt/new/dir/run.sh", Mode: 0o4755, Content: []byte("#!/bin/sh\n")},
		{Path: "/etc/empty", Mode: 0o600},
	}
	if err := WriteFiles(root, files); err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "victim")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFiles followed a symlink out of the root")
	}
	checkMode(t, filepath.Join(root, "etc/motd"), 0o644)
	checkMode(t, filepath.Join(root, "usr/lib/app/app.conf"), 0o640)
	checkMode(t, filepath.Join(root, "opt/new/dir/run.sh"), 0o755|fs.ModeSetuid)
	checkMode(t, filepath.Join(root, "opt/new"), fs.ModeDir|0o755)
	checkMode(t, filepath.Join(root, "etc/empty"), 0o600)
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "hello node-1\n" {
		t.Errorf("motd = %q", got)
	}
	// Every boot writes again: a second run replaces the content.
	files[0].Content = []byte("second boot\n")
	if err := WriteFiles(root, files); err != nil {
		t.Fatalf("WriteFiles again: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "second boot\n" {
		t.Errorf("motd after the second boot = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/.sealroot-file.tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestWriteFilesOwner(t *testing.T) {
	testenv.RequireRoot(t, "chowns to another user")
	root := t.TempDir()
	if err := WriteFiles(root, []wire.File{{Path: "/home/u/.profile", Mode: 0o6750, UID: 1000, GID: 100, Content: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "home/u/.profile"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1000 || st.Gid != 100 || fi.Mode() != 0o750|fs.ModeSetuid|fs.ModeSetgid {
		t.Errorf("file = %d:%d %v, want 1000:100 -rwsr-s---", st.Uid, st.Gid, fi.Mode())
	}
}

func TestWriteFilesRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files []wire.File
		want  string
	}{
		{"dotdot", []wire.File{{Path: "/etc/../../escape"}}, "not clean"},
		{"relative", []wire.File{{Path: "etc/x"}}, "not absolute"},
		{"huge", []wire.File{{Path: "/x", Content: make([]byte, wire.MaxFileSize+1)}}, "at most"},
		{"run", []wire.File{{Path: "/run/sealroot/secrets/x"}}, "under /run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			err := WriteFiles(root, tt.files)
			if !errors.Is(err, wire.ErrBadFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteFiles = %v, want ErrBadFile %q", err, tt.want)
			}
			if ents, _ := os.ReadDir(root); len(ents) != 0 {
				t.Errorf("refused files left %d entries in the root", len(ents))
			}
		})
	}
}

func TestWriteFilesOverDirectoryFails(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/motd"), 0o755)
	err := WriteFiles(root, []wire.File{{Path: "/etc/motd", Content: []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "/etc/motd") {
		t.Fatalf("WriteFiles over a directory = %v, want an error naming it", err)
	}
}

// FuzzPayloadFiles decodes arbitrary JSON as a payload, as the agent does
// after decryption, and writes its files into a temporary root: nothing
// may panic and nothing may appear outside the root.
func FuzzPayloadFiles(f *testing.F) {
	seed, _ := json.Marshal(&wire.Payload{MachineName: "n", Files: []wire.File{{Path: "/etc/a/b", Mode: 0o644, Content: []byte("c")}}})
	f.Add(seed)
	f.Add([]byte(`{"files":[{"path":"/../x"},{"path":"/a","mode":4294967295}]}`))
	f.Add([]byte(`{"files":[{"path":"/a"},{"path":"/a/b"}]}`))
	f.Add([]byte(`{"files":[{"path":"/l/x"}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var p wire.Payload
		if json.Unmarshal(in, &p) != nil {
			return
		}
		base := t.TempDir()
		root := filepath.Join(base, "root")
		os.MkdirAll(root, 0o755)
		os.Symlink("/../../..", filepath.Join(root, "l"))
		for i := range p.Files {
			p.Files[i].UID, p.Files[i].GID = uint32(os.Getuid()), uint32(os.Getgid())
		}
		_ = WriteFiles(root, p.Files)
		ents, _ := os.ReadDir(base)
		if len(ents) != 1 {
			t.Fatalf("files escaped the root: %v", ents)
		}
	})
}

func TestRun(t *testing.T) {
	root, run := t.TempDir(), t.TempDir()
	var hostname string
	p := &wire.Payload{
		MachineName: "node-1",
		Secrets:     map[string][]byte{"api-token": []byte("tok"), wire.SecretCHAPSecret: []byte("c")},
		Files:       []wire.File{{Path: "/etc/app.conf", Mode: 0o644, Content: []byte("name=node-1")}},
	}
	cfg := Config{
		SecretsDir:  filepath.Join(run, "sealroot/secrets"),
		SetHostname: func(b []byte) error { hostname = string(b); return nil },
	}
	if err := Run(cfg, root, p); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(run, "sealroot/secrets/api-token")); string(got) != "tok" {
		t.Errorf("secret = %q", got)
	}
	if hostname != "node-1" {
		t.Errorf("hostname = %q", hostname)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/app.conf")); string(got) != "name=node-1" {
		t.Errorf("file = %q", got)
	}
	// The persistent root holds no trace of the secrets.
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte("tok")) {
			t.Errorf("secret value found in the root at %s", path)
		}
		return nil
	})
}
