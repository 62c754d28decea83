package iscsi

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/sealroot/sealroot/server/iscsi/scsi"
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

func TestFileStoreGetLBAStatus(t *testing.T) {
	s := newFileStore(t, 4<<20)
	if _, err := s.WriteAt(bytes.Repeat([]byte{1}, 8192), 1<<20); err != nil {
		t.Fatal(err)
	}
	d := &scsi.Device{Store: s}
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9e, 0x12
	binary.BigEndian.PutUint32(cdb[10:], 4096)
	r := d.Execute(cdb, nil)
	if r.Status != scsi.StatusGood {
		t.Fatalf("GET LBA STATUS: status %#x sense % x", r.Status, r.Sense)
	}
	type extent struct {
		lba     uint64
		blocks  uint32
		dealloc bool
	}
	var got []extent
	for b := r.Data[8:]; len(b) >= 16; b = b[16:] {
		got = append(got, extent{binary.BigEndian.Uint64(b), binary.BigEndian.Uint32(b[8:]), b[12] == 1})
	}
	want := []extent{{0, 2048, true}, {2048, 16, false}, {2064, 8192 - 2064, true}}
	if !slices.Equal(got, want) {
		t.Errorf("GET LBA STATUS extents = %v, want %v", got, want)
	}
}
