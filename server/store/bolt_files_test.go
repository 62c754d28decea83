package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

func TestFiles(t *testing.T) { forEachStore(t, testFiles) }

func testFiles(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := db.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	mo, g := FileOwner{Machine: m.ID}, FileOwner{Group: "lab"}
	put := func(o FileOwner, f *File) {
		t.Helper()
		if err := db.PutFile(ctx, o, f); err != nil {
			t.Fatalf("PutFile(%s, %s): %v", o, f.Path, err)
		}
	}
	put(mo, &File{Path: "/etc/motd", Mode: 0o644, Content: []byte("one")})
	put(mo, &File{Path: "/etc/a.conf", Mode: 0o600, UID: 1, GID: 2, Template: true, Content: []byte("{{.Name}}")})
	put(mo, &File{Path: "/etc/motd", Mode: 0o644, Content: []byte("two")}) // replaces
	put(g, &File{Path: "/etc/motd", Mode: 0o644, Content: []byte("group")})

	got, err := db.Files(ctx, mo)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Path != "/etc/a.conf" || got[1].Path != "/etc/motd" || string(got[1].Content) != "two" {
		t.Fatalf("Files(machine) = %+v", got)
	}
	if !got[0].Template || got[0].UID != 1 || got[0].GID != 2 || got[0].Mode != 0o600 {
		t.Errorf("Files(machine)[0] = %+v, want template 1:2 0600", got[0])
	}
	if err := db.DeleteFile(ctx, mo, "/etc/a.conf"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteFile(ctx, mo, "/etc/a.conf"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteFile(gone) = %v, want ErrNotFound", err)
	}

	// Unknown owners.
	if err := db.PutFile(ctx, FileOwner{Group: "nosuch"}, &File{Path: "/x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("PutFile(unknown group) = %v, want ErrNotFound", err)
	}
	if _, err := db.Files(ctx, FileOwner{Machine: testMachine(9).ID}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Files(unknown machine) = %v, want ErrNotFound", err)
	}
	if err := db.PutFile(ctx, FileOwner{}, &File{Path: "/x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("PutFile(no owner) = %v, want ErrNotFound", err)
	}

	// Deleting the owner deletes its files: a new machine of the same ID
	// starts without them.
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Files(ctx, mo); err != nil || len(got) != 0 {
		t.Errorf("Files(recreated machine) = %v, %v; want none", got, err)
	}
	if err := db.DeleteGroup(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	db.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}})
	if got, err := db.Files(ctx, g); err != nil || len(got) != 0 {
		t.Errorf("Files(recreated group) = %v, %v; want none", got, err)
	}
}

func TestPutFileRefuses(t *testing.T) { forEachStore(t, testPutFileRefuses) }

func testPutFileRefuses(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	o := FileOwner{Machine: m.ID}
	big := bytes.Repeat([]byte("x"), wire.MaxFileSize)
	for i := range wire.MaxFilesTotal / wire.MaxFileSize {
		if err := db.PutFile(ctx, o, &File{Path: fmt.Sprintf("/big/%d", i), Content: big}); err != nil {
			t.Fatalf("PutFile %d: %v", i, err)
		}
	}
	tests := []struct {
		name string
		f    *File
		want error
		msg  string
	}{
		{"over_total", &File{Path: "/one/more", Content: []byte("x")}, ErrFilesLimit, "bytes of files"},
		{"under_a_file", &File{Path: "/big/0/x"}, ErrFilesLimit, "clashes"},
		{"over_a_file", &File{Path: "/big"}, ErrFilesLimit, "clashes"},
		{"dotdot", &File{Path: "/etc/../x"}, wire.ErrBadFile, "not clean"},
		{"too_big", &File{Path: "/x", Content: append(big, 'x')}, wire.ErrBadFile, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.PutFile(ctx, o, tt.f)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("PutFile = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
	// Replacing a file within the limit is fine even at the limit.
	if err := db.PutFile(ctx, o, &File{Path: "/big/0", Content: []byte("small")}); err != nil {
		t.Errorf("PutFile(replace at limit) = %v", err)
	}
}

// TestFilesChangeVersion: a release carries the files, so changing them
// changes the Version of the machines that get them.
func TestFilesChangeVersion(t *testing.T) { forEachStore(t, testFilesChangeVersion) }

func testFilesChangeVersion(t *testing.T, db testStore) {
	ctx := context.Background()
	in, out := testMachine(1), testMachine(2)
	in.Group = "lab"
	db.PutGroup(ctx, &Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}})
	for _, m := range []*Machine{in, out} {
		if err := db.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	version := func(m *Machine) uint64 {
		got, err := db.Machine(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Version
	}
	steps := []struct {
		name      string
		do        func() error
		inBumped  bool
		outBumped bool
	}{
		{"group_put", func() error { return db.PutFile(ctx, FileOwner{Group: "lab"}, &File{Path: "/a"}) }, true, false},
		{"group_delete", func() error { return db.DeleteFile(ctx, FileOwner{Group: "lab"}, "/a") }, true, false},
		{"machine_put", func() error { return db.PutFile(ctx, FileOwner{Machine: out.ID}, &File{Path: "/a"}) }, false, true},
		{"machine_delete", func() error { return db.DeleteFile(ctx, FileOwner{Machine: out.ID}, "/a") }, false, true},
		{"refused_put", func() error { return db.PutFile(ctx, FileOwner{Machine: in.ID}, &File{Path: "/../a"}) }, false, false},
	}
	for _, s := range steps {
		inV, outV := version(in), version(out)
		err := s.do()
		if (err != nil) != (s.name == "refused_put") {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := version(in) != inV; got != s.inBumped {
			t.Errorf("%s: group member's version changed = %v, want %v", s.name, got, s.inBumped)
		}
		if got := version(out) != outV; got != s.outBumped {
			t.Errorf("%s: other machine's version changed = %v, want %v", s.name, got, s.outBumped)
		}
	}
}
