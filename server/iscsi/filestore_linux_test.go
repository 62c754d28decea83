package iscsi

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

func TestFileStore(t *testing.T) {
	s := newFileStore(t, 4<<20)
	data := bytes.Repeat([]byte{0xa5}, 1<<20)
	if _, err := s.WriteAtFUA(data, 1<<20); err != nil {
		t.Fatalf("WriteAtFUA: %v", err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	before := allocated(t, s)
	if err := s.Punch(1<<20, 1<<20); err != nil {
		t.Fatalf("Punch: %v", err)
	}
	got := make([]byte, 1<<20)
	if _, err := s.ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Errorf("punched range does not read back as zeros")
	}
	if after := allocated(t, s); after >= before {
		t.Errorf("Punch left %d bytes allocated, was %d", after, before)
	}
	if s.Size() != 4<<20 {
		t.Errorf("Size() = %d after Punch, want %d (KEEP_SIZE)", s.Size(), 4<<20)
	}
}

func allocated(t *testing.T, s *FileStore) int64 {
	fi, err := os.Stat(s.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}
