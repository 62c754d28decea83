package bootnext

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheck runs Check over fake efivarfs directories: a local disk that
// cannot be booted, or whose boot came back through the network, is
// told apart from one that may be the default.
func TestCheck(t *testing.T) {
	now := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		vars         func(t *testing.T) string
		wantMissing  error
		wantCameBack error
	}{
		{"ready", ovmfVars, nil, nil},
		{"no_efivars", func(t *testing.T) string { return t.TempDir() }, os.ErrNotExist, nil},
		{"network_only", func(t *testing.T) string {
			dir := t.TempDir()
			writeVar(t, dir, "Boot0000", pxe)
			writeVar(t, dir, "Boot0001", sh)
			writeVar(t, dir, "BootOrder", []byte{0, 0, 1, 0})
			return dir
		}, ErrNoLocalDisk, nil},
		{"bootnext_still_pending", func(t *testing.T) string {
			dir := ovmfVars(t)
			if err := Set(dir, 4); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil, ErrNotHonoured},
		{"bootnext_pending_for_another_entry", func(t *testing.T) string {
			dir := ovmfVars(t)
			if err := Set(dir, 1); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil, nil},
		{"came_back_soon", func(t *testing.T) string {
			dir := ovmfVars(t)
			if err := Mark(dir, 4, now.Add(-40*time.Second)); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil, ErrCameBack},
		{"local_system_ran_a_while", func(t *testing.T) string {
			dir := ovmfVars(t)
			if err := Mark(dir, 4, now.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil, nil},
		{"mark_from_the_future", func(t *testing.T) string {
			dir := ovmfVars(t)
			if err := Mark(dir, 4, now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil, nil},
		{"malformed_mark", func(t *testing.T) string {
			dir := ovmfVars(t)
			if err := os.WriteFile(markPath(dir), []byte{7, 0, 0, 0, 1}, 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.vars(t)
			r := Check(dir, now)
			if !errors.Is(r.Missing, tt.wantMissing) || (tt.wantMissing == nil) != (r.Missing == nil) {
				t.Errorf("Missing = %v, want %v", r.Missing, tt.wantMissing)
			}
			if !errors.Is(r.CameBack, tt.wantCameBack) || (tt.wantCameBack == nil) != (r.CameBack == nil) {
				t.Errorf("CameBack = %v, want %v", r.CameBack, tt.wantCameBack)
			}
			if _, err := os.Stat(markPath(dir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mark still there after Check: %v", err)
			}
		})
	}
}

// TestCheck_one_return_blocks_one_boot: the mark Check removes keeps the
// local disk from being the default for the boot that came back only.
func TestCheck_one_return_blocks_one_boot(t *testing.T) {
	dir := ovmfVars(t)
	now := time.Now()
	if err := Mark(dir, 4, now); err != nil {
		t.Fatal(err)
	}
	if r := Check(dir, now.Add(time.Minute)); !errors.Is(r.CameBack, ErrCameBack) || r.Entry.Number != 4 {
		t.Fatalf("first Check = %+v, want came back from Boot0004", r)
	}
	if r := Check(dir, now.Add(2*time.Minute)); r.CameBack != nil || r.Missing != nil {
		t.Fatalf("second Check = %+v, want the local disk ready again", r)
	}
}

func TestMarkFormat(t *testing.T) {
	dir := t.TempDir()
	if err := Mark(dir, 0x0104, time.Unix(0x0102030405, 0)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "SealrootLocalDisk-"+MarkGUID))
	want := []byte{7, 0, 0, 0, 5, 4, 3, 2, 1, 0, 0, 0, 4, 1}
	if err != nil || string(b) != string(want) {
		t.Fatalf("mark = % x, %v, want % x", b, err, want)
	}
}
