package preload

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := []Entry{
		{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko"},
		{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko.xz"},
	}
	var buf bytes.Buffer
	if err := Write(&buf, in); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := Parse(&buf)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("Parse(Write(x)) = %v, want %v", got, in)
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"one_field", "ext4\n"},
		{"three_fields", "ext4 a.ko b\n"},
		{"absolute_path", "ext4 /lib/ext4.ko\n"},
		{"parent_escape", "ext4 ../../etc/shadow\n"},
		{"unclean_path", "ext4 kernel/../../x.ko\n"},
		{"slash_in_name", "a/b kernel/x.ko\n"},
		{"too_many", strings.Repeat("m kernel/m.ko\n", MaxEntries+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%.30q) error = %v, want ErrMalformed", tt.in, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, []Entry{{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko"}})
	f.Add(buf.String())
	f.Add("# comment\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, entries); err != nil {
			t.Fatalf("Write(Parse(x)): %v", err)
		}
		again, err := Parse(&out)
		if err != nil || !reflect.DeepEqual(again, entries) && len(entries) > 0 {
			t.Fatalf("round trip: %v, %v != %v", err, again, entries)
		}
	})
}
