package eventlog

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/sealroot/sealroot/test/fakeboot"
)

// FuzzVerify feeds arbitrary logs and PCR 4 values to Verify: it must not
// panic, must fail with one of its sentinels, and on success must return
// only events of quoted PCRs.
func FuzzVerify(f *testing.F) {
	b := testBoot(f)
	quoted := b.Quoted(quotedPCRs...)
	f.Add(b.Log, quoted[4].Digest)
	f.Add(b.Log[:len(b.Log)/2], quoted[4].Digest)
	f.Add(fakeboot.Encode(b.Events[:5]), make([]byte, 32))
	f.Add(fakeboot.Encode(nil), make([]byte, 32))
	rewritten := slices.Clone(b.Events)
	for i := range rewritten {
		if rewritten[i].Type == fakeboot.EvEFIAction {
			rewritten[i].Data = []byte("rewritten action") // ErrEventData
		}
	}
	f.Add(fakeboot.Encode(rewritten), quoted[4].Digest)
	big, err := fakeboot.Build(realisticSpec())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(big.Log, big.Quoted(4)[0].Digest)
	sentinels := []error{ErrEmptyLog, ErrMalformed, ErrReplay, ErrMissingEvents, ErrAlreadyReleased, ErrInvalidPCRs, ErrEventData}

	f.Fuzz(func(t *testing.T, log, pcr4 []byte) {
		pcrs := setPCR(quoted, 4, pcr4)
		if st, err := SecureBoot(log, pcrs); err == nil && st == nil {
			t.Fatal("SecureBoot returned neither a state nor an error")
		}
		events, err := Verify(log, pcrs)
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("Verify error %v wraps no sentinel", err)
			}
			return
		}
		for _, e := range events {
			if !slices.Contains(quotedPCRs, e.PCR) || len(e.Digest) != 32 {
				t.Fatalf("Verify returned event %+v", e)
			}
		}
		if bytes.Equal(log, b.Log) && len(events) != len(b.Extends) {
			t.Fatalf("Verify returned %d events for the reference log", len(events))
		}
	})
}

// realisticSpec gives a log of realistic size for a UEFI machine with a
// Secure Boot db of a few certificates and a shim MokList (~20 KiB, ~40
// events; firmware logs seen in the field are 10-60 KiB).
func realisticSpec() fakeboot.Spec {
	s := testSpec()
	s.SecureBoot = true
	s.DB = bytes.Repeat([]byte{0x30, 0x82}, 6<<10)
	s.MokList = bytes.Repeat([]byte{0x30, 0x82}, 2<<10)
	s.OptionROM = []byte("virtio-net option rom")
	return s
}

func BenchmarkVerify(b *testing.B) {
	boot, err := fakeboot.Build(realisticSpec())
	if err != nil {
		b.Fatal(err)
	}
	pcrs := boot.Quoted(quotedPCRs...)
	b.SetBytes(int64(len(boot.Log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(boot.Log, pcrs); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCountEvents checks countEvents against go-attestation's parser: on
// every log the parser accepts, it must count the same events.
func FuzzCountEvents(f *testing.F) {
	b := testBoot(f)
	f.Add(b.Log)
	f.Add(fakeboot.Encode(b.Events[:3]))
	f.Add(sha1Log())
	f.Add(append(sha1Log(), sha1Log()...))
	f.Fuzz(func(t *testing.T, log []byte) {
		n, ok := countEvents(log, MaxEvents)
		el, err := attest.ParseEventLog(log)
		if err != nil {
			return
		}
		want := len(el.Events(attest.HashSHA256))
		if !ok || min(n, MaxEvents+1) != min(want, MaxEvents+1) {
			t.Fatalf("countEvents = %d, %v; parser found %d events", n, ok, want)
		}
	})
}
