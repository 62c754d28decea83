package bootnext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

// node is one device path node.
func node(typ, sub byte, data ...byte) []byte {
	b := []byte{typ, sub, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], uint16(4+len(data)))
	return append(b, data...)
}

var end = node(0x7f, 0xff)

func loadOption(active bool, desc string, path ...[]byte) []byte {
	var attr uint32
	if active {
		attr = loadOptionActive
	}
	p := bytes.Join(append(path, end), nil)
	b := binary.LittleEndian.AppendUint32(nil, attr)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(p)))
	for _, c := range utf16.Encode([]rune(desc)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	b = append(b, 0, 0)
	return append(b, p...)
}

func writeVar(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	b := append([]byte{7, 0, 0, 0}, data...)
	if err := os.WriteFile(filepath.Join(dir, name+"-"+GlobalVariable), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	pci  = node(0x01, 0x01, 0, 3) // hardware: PCI
	pxe  = loadOption(true, "UEFI PXEv4", pci, node(0x03, 0x0b, make([]byte, 33)...), node(0x03, 0x0c, make([]byte, 23)...))
	http = loadOption(true, "UEFI HTTPv4", pci, node(0x03, 0x0b, make([]byte, 33)...), node(0x03, 0x18, []byte("http://x/")...))
	sh   = loadOption(true, "EFI Internal Shell", node(0x04, 0x07, make([]byte, 16)...), node(0x04, 0x06, make([]byte, 16)...))
	off  = loadOption(false, "old disk", pci, node(0x03, 0x12, 0, 0, 0, 0, 0, 0))
	disk = loadOption(true, "UEFI QEMU HARDDISK QM00001", pci, node(0x03, 0x12, 0, 0, 0, 0, 0, 0))
)

// OVMF's boot entries: network first, the shell, an inactive disk, the disk.
func ovmfVars(t *testing.T) string {
	dir := t.TempDir()
	for n, opt := range [][]byte{pxe, http, sh, off, disk} {
		writeVar(t, dir, "Boot000"+string(rune('0'+n)), opt)
	}
	writeVar(t, dir, "BootOrder", []byte{0, 0, 1, 0, 2, 0, 3, 0, 9, 0, 4, 0}) // 0009 is gone
	return dir
}

func TestSetLocalDisk(t *testing.T) {
	dir := ovmfVars(t)
	e, err := SetLocalDisk(dir)
	if err != nil {
		t.Fatalf("SetLocalDisk: %v", err)
	}
	if e.Number != 4 || e.Description != "UEFI QEMU HARDDISK QM00001" {
		t.Fatalf("local disk = %+v, want Boot0004 UEFI QEMU HARDDISK QM00001", e)
	}
	got, err := os.ReadFile(filepath.Join(dir, "BootNext-"+GlobalVariable))
	if want := []byte{7, 0, 0, 0, 4, 0}; err != nil || !bytes.Equal(got, want) {
		t.Fatalf("BootNext = % x, %v, want % x", got, err, want)
	}
	// Setting again replaces it.
	if err := Set(dir, 2); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "BootNext-"+GlobalVariable)); !bytes.Equal(got, []byte{7, 0, 0, 0, 2, 0}) {
		t.Fatalf("BootNext after Set(2) = % x", got)
	}
}

func TestNoLocalDisk(t *testing.T) {
	dir := t.TempDir()
	writeVar(t, dir, "Boot0000", pxe)
	writeVar(t, dir, "Boot0001", sh)
	writeVar(t, dir, "BootOrder", []byte{0, 0, 1, 0})
	if _, err := SetLocalDisk(dir); !errors.Is(err, ErrNoLocalDisk) {
		t.Fatalf("SetLocalDisk = %v, want ErrNoLocalDisk", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "BootNext-"+GlobalVariable)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("BootNext written without a local disk: %v", err)
	}
}

func TestNoEFI(t *testing.T) {
	if _, err := SetLocalDisk(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("SetLocalDisk without BootOrder = %v, want not exist", err)
	}
}

// FuzzParseLoadOption: firmware variables are the firmware's, but a
// malformed one must be an error, never a panic.
func FuzzParseLoadOption(f *testing.F) {
	for _, opt := range [][]byte{pxe, http, sh, off, disk} {
		f.Add(opt)
	}
	f.Fuzz(func(t *testing.T, b []byte) { ParseLoadOption(b) })
}
