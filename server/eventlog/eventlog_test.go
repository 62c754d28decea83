package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 15}

func testSpec() fakeboot.Spec {
	return fakeboot.Spec{
		Firmware: "OVMF 2022.11",
		Loader:   []byte("ipxe.efi bytes"),
		Kernel:   []byte("vmlinuz bytes"),
		Initrd:   []byte("initramfs bytes"),
		Cmdline:  "vmlinuz.efi console=ttyS0 quiet",
	}
}

func testBoot(t testing.TB) *fakeboot.Boot {
	t.Helper()
	b, err := fakeboot.Build(testSpec())
	if err != nil {
		t.Fatalf("fakeboot.Build: %v", err)
	}
	return b
}

func TestVerify(t *testing.T) {
	b := testBoot(t)
	events, err := Verify(b.Log, b.Quoted(quotedPCRs...))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(events) != len(b.Extends) {
		t.Errorf("Verify returned %d events, want %d", len(events), len(b.Extends))
	}
	for i, e := range events {
		// Event 0 of the log is the Spec ID header, b.Events[0] the
		// StartupLocality event, so measured events start at 2.
		want := b.Events[e.Sequence-1]
		if e.PCR != want.PCR || e.Type != want.Type || !bytes.Equal(e.Digest, want.Digest) {
			t.Errorf("event %d = %+v, does not match log event %d %+v", i, e, e.Sequence, want)
		}
		if i > 0 && e.Sequence <= events[i-1].Sequence {
			t.Errorf("event %d: sequence %d not after %d", i, e.Sequence, events[i-1].Sequence)
		}
	}
	descs := map[string]string{}
	for _, e := range events {
		descs[e.TypeName+" "+e.Description] = e.Description
	}
	for _, want := range []string{
		"EV_S_CRTM_VERSION OVMF 2022.11",
		"EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot",
		"EV_EFI_VARIABLE_BOOT Boot0001",
		`EV_EFI_BOOT_SERVICES_APPLICATION \vmlinuz.efi`,
		"EV_EFI_ACTION Calling EFI Application from Boot Option",
		"EV_EVENT_TAG Linux initrd",
		"EV_EVENT_TAG LOADED_IMAGE::LoadOptions",
		"EV_IPL .linux",
		"EV_SEPARATOR ",
	} {
		if _, ok := descs[want]; !ok {
			t.Errorf("no event %q; have %q", want, keys(descs))
		}
	}
}

func keys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

func setPCR(pcrs []wire.PCR, index int, d []byte) []wire.PCR {
	out := slices.Clone(pcrs)
	for i := range out {
		if out[i].Index == index {
			out[i].Digest = d
		}
	}
	return out
}

func sha1Log() []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 8) // EV_S_CRTM_VERSION
	b = append(b, make([]byte, 20)...)
	b = binary.LittleEndian.AppendUint32(b, 2)
	return append(b, 'v', 0)
}

func TestVerifyRejects(t *testing.T) {
	b := testBoot(t)
	quoted := b.Quoted(quotedPCRs...)
	nonZero := bytes.Repeat([]byte{1}, 32)
	var noPCR4 []fakeboot.Event
	for _, e := range b.Events {
		if e.PCR != 4 {
			noPCR4 = append(noPCR4, e)
		}
	}
	tampered := slices.Clone(b.Events)
	tampered[len(tampered)-1].Digest = bytes.Repeat([]byte{2}, 32) // last PCR 5 event
	header := fakeboot.Encode(nil)
	many := make([]fakeboot.Event, MaxEvents+1)
	for i := range many {
		many[i] = fakeboot.Event{PCR: 4, Type: 0x0d, Digest: make([]byte, 32)}
	}

	tests := []struct {
		name    string
		log     []byte
		pcrs    []wire.PCR
		wantErr error
		wantMsg string
	}{
		{"empty_log", nil, quoted, ErrEmptyLog, ""},
		{"header_only", header, quoted, ErrEmptyLog, ""},
		{"garbage", []byte("not an event log at all, really not"), quoted, ErrMalformed, ""},
		{"truncated", b.Log[:len(b.Log)-3], quoted, ErrMalformed, ""},
		{"truncated_header", b.Log[:20], quoted, ErrMalformed, ""},
		{"sha1_only_log", sha1Log(), quoted[:1], ErrMalformed, ""},
		{"too_large", append(slices.Clone(b.Log), make([]byte, MaxLogSize)...), quoted, ErrMalformed, ""},
		{"too_many_events", fakeboot.Encode(many), quoted, ErrMalformed, "over 2048 events"},
		{"wrong_pcr4", b.Log, setPCR(quoted, 4, nonZero), ErrReplay, "quoted PCRs: PCR 4"},
		{"tampered_digest", fakeboot.Encode(tampered), quoted, ErrReplay, "quoted PCRs: PCR 5"},
		{"pcr4_events_dropped", fakeboot.Encode(noPCR4), quoted, ErrMissingEvents, "PCR 4"},
		{"pcr10_without_events", b.Log, append(slices.Clone(quoted), wire.PCR{Index: 10, Digest: nonZero}), ErrMissingEvents, "PCR 10"},
		{"pcr15_extended", b.Log, setPCR(quoted, 15, nonZero), ErrAlreadyReleased, ""},
		{"pcr_digest_sha1_size", b.Log, setPCR(quoted, 0, make([]byte, 20)), ErrInvalidPCRs, "PCR 0"},
		{"pcr_index_out_of_range", b.Log, []wire.PCR{{Index: 24, Digest: make([]byte, 32)}}, ErrInvalidPCRs, "24"},
		{"pcr_negative_index", b.Log, []wire.PCR{{Index: -1, Digest: make([]byte, 32)}}, ErrInvalidPCRs, "-1"},
		{"pcr_listed_twice", b.Log, append(slices.Clone(quoted), quoted[0]), ErrInvalidPCRs, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := Verify(tt.log, tt.pcrs)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %d events, %v; want %v", len(events), err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Verify error %q does not mention %q", err, tt.wantMsg)
			}
			if events != nil {
				t.Errorf("Verify returned %d events with an error", len(events))
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	b := testBoot(t)
	tests := []struct {
		name string
		pcrs []int
	}{
		{"pcr4_only", []int{4}},
		{"no_pcrs", nil},
		{"unused_pcr10_zero", []int{4, 9, 10}},
		{"without_pcr15", []int{0, 1, 2, 3, 4, 5, 6, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := Verify(b.Log, b.Quoted(tt.pcrs...))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			for _, e := range events {
				if !slices.Contains(tt.pcrs, e.PCR) {
					t.Errorf("event %+v for a PCR not quoted", e)
				}
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		typ  uint32
		data []byte
		want string
	}{
		{"action", 0x80000007, []byte("Exit Boot Services Invocation"), "Exit Boot Services Invocation"},
		{"separator", 4, []byte{0, 0, 0, 0}, ""},
		{"binary", 0x80000008, []byte{0x00, 0x10, 0xc0, 0xff, 0x01, 0x02, 0x03, 0x04}, ""},
		{"control_chars", 0x0d, []byte("tab\there\nnow"), "tab.here.now"},
		{"truncated", 0x0d, bytes.Repeat([]byte("x"), 200), strings.Repeat("x", MaxDescription) + "…"},
		{"invalid_utf8", 0x0d, []byte("grub\xffcmd line here"), "grub.cmd line here"},
		{"utf16", 0x0d, []byte{'h', 0, 'i', 0, 0, 0}, "hi"},
		{"tag_bad_size", 6, []byte{1, 2, 3, 4, 0xff, 0, 0, 0, 'x'}, ""},
		{"variable_short", 0x80000001, []byte("short"), "short"},
		{"image_bad_path_length", 0x80000003, make([]byte, 40), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Describe(tt.typ, tt.data); got != tt.want {
				t.Errorf("Describe(%#x, %q) = %q, want %q", tt.typ, tt.data, got, tt.want)
			}
		})
	}
}
