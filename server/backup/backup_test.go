package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"testing"
)

// The state directory's rules: records and keys in, data out.
func TestInclude(t *testing.T) {
	for rel, want := range map[string]bool{
		"secrets.age.key": true, "pki/ca.key": true, "audit.log": true, "state.db": false,
		"images/index.json": true, "images/bases/sha256-ab.img": false, "images/trees/sha256-ab/etc/passwd": false,
		"volumes/m1/volume.json": true, "volumes/m1/disk.cow": false, "volumes/m1/snapshots/s1.json": true, "volumes/m1/snapshots/s1.cow": false,
		"nfs/roots/m1/state.json": true, "nfs/roots/m1/upper/etc/x": false, "nfs/roots/m1/snapshots/s1/base": true,
		"nfs/roots/m1/snapshots/s1/upper/x": false, "nfs/ganesha/ganesha.conf": true, "iscsi/m1.rec": true,
	} {
		if got := include(rel); got != want {
			t.Errorf("include(%s) = %v, want %v", rel, got, want)
		}
	}
}

// A hostile archive cannot write outside the target.
func TestRestoreRefusesUnsafe(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  tar.Header
	}{
		{"traversal", tar.Header{Name: "../evil", Typeflag: tar.TypeReg}},
		{"absolute", tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg}},
		{"symlink", tar.Header{Name: "pki", Typeflag: tar.TypeSymlink, Linkname: "/etc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			tw := tar.NewWriter(gz)
			tw.WriteHeader(&tc.hdr)
			tw.Close()
			gz.Close()
			_, err := Restore(&buf, t.TempDir())
			if err == nil || errors.Is(err, ErrNotEmpty) {
				t.Fatalf("Restore = %v, want refusal", err)
			}
		})
	}
}
