package uki

import (
	"bytes"
	"debug/pe"
	"errors"
	"os"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// testParts are small synthetic parts; the stub does not care what they hold.
func testParts() Parts {
	return Parts{
		Linux:   bytes.Repeat([]byte("kernel"), 1000),
		Initrd:  bytes.Repeat([]byte{0x07, 0x07, 0x01}, 777),
		Cmdline: "console=ttyS0 panic=10",
		OSRel:   []byte("ID=sealroot\nNAME=sealroot\n"),
	}
}

func readStub(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(DefaultStub)
	if err != nil {
		testenv.Unavailable(t, "systemd EFI stub: %v (systemd-boot-efi)", err)
	}
	return b
}

func TestBuild_sections_parse_with_debug_pe(t *testing.T) {
	stub := readStub(t)
	p := testParts()
	out, err := Build(stub, p.Sections())
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("debug/pe: %v", err)
	}
	want := map[string][]byte{".linux": p.Linux, ".initrd": p.Initrd, ".cmdline": []byte(p.Cmdline), ".osrel": p.OSRel}
	for name, data := range want {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("section %s missing", name)
		}
		got, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if s.VirtualSize != uint32(len(data)) || !bytes.Equal(got[:s.VirtualSize], data) {
			t.Errorf("section %s: content differs (virtual size %d, want %d)", name, s.VirtualSize, len(data))
		}
		if s.VirtualAddress%sectionAlign != 0 {
			t.Errorf("section %s at unaligned address %#x", name, s.VirtualAddress)
		}
	}
	// Added sections lie past the stub's, without overlap, inside SizeOfImage.
	var end uint32
	for _, s := range f.Sections {
		if s.VirtualAddress < end {
			t.Errorf("section %s at %#x overlaps the previous one ending at %#x", s.Name, s.VirtualAddress, end)
		}
		end = s.VirtualAddress + s.VirtualSize
	}
	if oh := f.OptionalHeader.(*pe.OptionalHeader64); oh.SizeOfImage < end {
		t.Errorf("SizeOfImage %#x below the last section's end %#x", oh.SizeOfImage, end)
	}
	// The stub's own sections are unchanged.
	stubSecs, _ := Sections(stub)
	outSecs, _ := Sections(out)
	for i, s := range stubSecs {
		if outSecs[i].Name != s.Name || !bytes.Equal(outSecs[i].Data, s.Data) {
			t.Errorf("stub section %s changed", s.Name)
		}
	}
}

func TestBuild_reproducible(t *testing.T) {
	stub := readStub(t)
	a, err := Build(stub, testParts().Sections())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(stub, testParts().Sections())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same parts differ")
	}
}

func TestBuild_refuses(t *testing.T) {
	stub := readStub(t)
	p := testParts()
	tests := []struct {
		name     string
		stub     []byte
		sections []Section
		want     error
	}{
		{"duplicate_section", stub, append(p.Sections(), Section{Name: ".linux", Data: []byte("x")}), ErrSection},
		{"stub_section_name", stub, []Section{{Name: ".sbat", Data: []byte("x")}}, ErrSection},
		{"empty_section", stub, []Section{{Name: ".dtb"}}, ErrSection},
		{"long_name", stub, []Section{{Name: ".toolongname", Data: []byte("x")}}, ErrSection},
		{"no_room", stub, manySections(8), ErrNoRoom},
		{"not_pe", []byte("MZ not a PE file at all, far too short............................"), p.Sections(), ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(tt.stub, tt.sections); !errors.Is(err, tt.want) {
				t.Fatalf("Build: got %v, want %v", err, tt.want)
			}
		})
	}
}

func manySections(n int) []Section {
	var out []Section
	for i := range n {
		out = append(out, Section{Name: string(rune('a' + i)), Data: []byte{1}})
	}
	return out
}
