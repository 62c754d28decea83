package eventlog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"unicode/utf16"

	"github.com/sealroot/sealroot/test/fakeboot"
	"github.com/sealroot/sealroot/wire"
)

// alter returns a copy of events with the data of the n-th event (0-based)
// of type typ in pcr replaced by f(data); digests stay, so replay still
// passes. It also returns the event's log sequence number.
func alter(t *testing.T, events []fakeboot.Event, pcr int, typ uint32, n int, f func([]byte) []byte) ([]fakeboot.Event, int) {
	t.Helper()
	out := slices.Clone(events)
	for i := range out {
		if out[i].PCR != pcr || out[i].Type != typ {
			continue
		}
		if n > 0 {
			n--
			continue
		}
		out[i].Data = f(slices.Clone(out[i].Data))
		return out, i + 1 // b.Events[0] is log event 1
	}
	t.Fatalf("no event of type %#x in PCR %d", typ, pcr)
	return nil, 0
}

func replace(s string) func([]byte) []byte { return func([]byte) []byte { return []byte(s) } }

// replayPCRs returns the sha256 values the events extend, for the PCRs given.
func replayPCRs(events []fakeboot.Event, indices ...int) []wire.PCR {
	vals := map[int][]byte{}
	for _, e := range events {
		if e.Type == fakeboot.EvNoAction {
			continue
		}
		h := sha256.New()
		h.Write(orZero(vals[e.PCR]))
		h.Write(e.Digest)
		vals[e.PCR] = h.Sum(nil)
	}
	out := make([]wire.PCR, 0, len(indices))
	for _, i := range indices {
		out = append(out, wire.PCR{Index: i, Digest: orZero(vals[i])})
	}
	return out
}

func orZero(b []byte) []byte {
	if b == nil {
		return make([]byte, 32)
	}
	return b
}

func sha1Padded(data []byte) []byte {
	d := sha1.Sum(data)
	return append(d[:], make([]byte, 12)...)
}

func utf16Bytes(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func TestVerifyRefusesRewrittenEventData(t *testing.T) {
	spec := testSpec()
	spec.SecureBoot = true
	b, err := fakeboot.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	quoted := b.Quoted(quotedPCRs...)
	tests := []struct {
		name         string
		pcr          int
		typ          uint32
		n            int
		f            func([]byte) []byte
		wantTypeName string
	}{
		{"separator_pcr4", 4, fakeboot.EvSeparator, 0, replace("Calling EFI Application from Boot Option"), "EV_SEPARATOR"},
		{"separator_pcr0_one_byte", 0, fakeboot.EvSeparator, 0, func(d []byte) []byte { d[3] = 1; return d }, "EV_SEPARATOR"},
		{"separator_pcr7_ff", 7, fakeboot.EvSeparator, 0, replace("\xff\xff\xff\xff"), "EV_SEPARATOR"},
		{"efi_action_calling", 4, fakeboot.EvEFIAction, 0, replace("Calling EFI Application from Recovery"), "EV_EFI_ACTION"},
		{"efi_action_ebs_nul_added", 5, fakeboot.EvEFIAction, 1, func(d []byte) []byte { return append(d, 0) }, "EV_EFI_ACTION"},
		{"efi_action_emptied", 5, fakeboot.EvEFIAction, 0, replace(""), "EV_EFI_ACTION"},
		{"secureboot_value", 7, fakeboot.EvEFIVariableDriverConfig, 0, func(d []byte) []byte { d[len(d)-1] = 0; return d }, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
		{"variable_renamed", 7, fakeboot.EvEFIVariableDriverConfig, 3, func(d []byte) []byte {
			return bytes.Replace(d, utf16Bytes("db"), utf16Bytes("dx"), 1)
		}, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, seq := alter(t, b.Events, tt.pcr, tt.typ, tt.n, tt.f)
			events, err := Verify(fakeboot.Encode(evs), quoted)
			if !errors.Is(err, ErrEventData) {
				t.Fatalf("Verify = %d events, %v; want ErrEventData", len(events), err)
			}
			want := fmt.Sprintf("PCR %d event %d (%s)", tt.pcr, seq, tt.wantTypeName)
			if !bytes.Contains([]byte(err.Error()), []byte(want)) {
				t.Errorf("error %q does not name %q", err, want)
			}
			if events != nil {
				t.Errorf("Verify returned %d events with an error", len(events))
			}
		})
	}
}

// TestVerifyEventDataAccepts covers logs real firmware writes whose data
// rules differ from the plain SHA-256 rule, and the types left unchecked.
func TestVerifyEventDataAccepts(t *testing.T) {
	action := []byte("Calling INT 19h")
	notes := []byte("firmware error: option ROM hash failed")
	tests := []struct {
		name   string
		events []fakeboot.Event
	}{
		{"seabios_pre_1_15_separator_without_data", []fakeboot.Event{
			{PCR: 0, Type: fakeboot.EvSeparator, Digest: sha1Padded([]byte{0xff, 0xff, 0xff, 0xff})},
		}},
		{"seabios_pre_1_15_action_sha1_padded", []fakeboot.Event{
			{PCR: 4, Type: evAction, Digest: sha1Padded(action), Data: action},
		}},
		{"seabios_action_sha256", []fakeboot.Event{
			{PCR: 4, Type: evAction, Digest: sum256(action), Data: action},
		}},
		{"seabios_separator_ff", []fakeboot.Event{
			{PCR: 0, Type: fakeboot.EvSeparator, Digest: sum256([]byte{0xff, 0xff, 0xff, 0xff}), Data: []byte{0xff, 0xff, 0xff, 0xff}},
		}},
		{"error_separator_arbitrary_data", []fakeboot.Event{
			{PCR: 2, Type: fakeboot.EvSeparator, Digest: sum256([]byte{1, 0, 0, 0}), Data: notes},
		}},
		{"crtm_version_not_hash_of_data", []fakeboot.Event{
			// Dell PowerEdge XR4520c: "1.17.3" whose hash is not the digest.
			{PCR: 0, Type: fakeboot.EvSCRTMVersion, Digest: sum256([]byte("other")), Data: append(utf16Bytes("1.17.3"), 0, 0)},
		}},
		{"ipl_not_hash_of_data", []fakeboot.Event{
			{PCR: 8, Type: fakeboot.EvIPL, Digest: sum256([]byte("set timeout=5")), Data: []byte("grub_cmd: set timeout=5")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pcrs := []int{tt.events[0].PCR}
			events, err := Verify(fakeboot.Encode(tt.events), replayPCRs(tt.events, pcrs...))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if len(events) != len(tt.events) {
				t.Errorf("Verify returned %d events, want %d", len(events), len(tt.events))
			}
		})
	}
}

// TestFakebootDataBoundDigests checks that fakeboot generates every
// data-bound event the way the spec defines it, and that the generated
// logs pass.
func TestFakebootDataBoundDigests(t *testing.T) {
	for _, spec := range []fakeboot.Spec{testSpec(), realisticSpec()} {
		b, err := fakeboot.Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, e := range b.Events {
			if dataBound(e.Type) {
				n++
				if !bytes.Equal(e.Digest, sum256(e.Data)) {
					t.Errorf("fakeboot event %d (PCR %d, type %#x): digest is not SHA-256 of its data", i+1, e.PCR, e.Type)
				}
			}
		}
		if n < 10 {
			t.Errorf("fakeboot log has %d data-bound events, want separators, actions and variables", n)
		}
		if _, err := Verify(b.Log, b.Quoted(quotedPCRs...)); err != nil {
			t.Errorf("Verify(fakeboot log): %v", err)
		}
	}
}

// An altered event in a PCR that is not quoted is not verified, hence not
// returned and not checked.
func TestVerifyIgnoresUnquotedEventData(t *testing.T) {
	b := testBoot(t)
	evs, _ := alter(t, b.Events, 5, fakeboot.EvEFIAction, 0, replace("anything"))
	quoted := []int{0, 4, 7}
	events, err := Verify(fakeboot.Encode(evs), b.Quoted(quoted...))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, e := range events {
		if e.PCR == 5 {
			t.Fatalf("event of unquoted PCR 5 returned: %+v", e)
		}
	}
}
