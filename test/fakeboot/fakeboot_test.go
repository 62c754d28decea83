package fakeboot

import (
	"bytes"
	"crypto"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-attestation/attest"
)

func baseSpec() Spec {
	return Spec{
		Firmware: "OVMF 2022.11",
		Loader:   []byte("ipxe image"),
		Kernel:   []byte("kernel image"),
		Initrd:   []byte("initramfs image"),
		Cmdline:  "vmlinuz.efi console=ttyS0 quiet",
	}
}

func TestBuildReplays(t *testing.T) {
	b, err := Build(baseSpec())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	el, err := attest.ParseEventLog(b.Log)
	if err != nil {
		t.Fatalf("attest.ParseEventLog: %v", err)
	}
	var pcrs []attest.PCR
	for i, d := range b.PCRs() {
		pcrs = append(pcrs, attest.PCR{Index: i, Digest: d, DigestAlg: crypto.SHA256})
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(events) != len(b.Extends) {
		t.Errorf("Verify returned %d events, want %d", len(events), len(b.Extends))
	}
	have := map[int]bool{}
	for _, e := range events {
		have[e.Index] = true
	}
	for _, pcr := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14} {
		if !have[pcr] {
			t.Errorf("PCR %d has no events", pcr)
		}
	}
}

func TestBuildNoKernel(t *testing.T) {
	if _, err := Build(Spec{}); !errors.Is(err, ErrNoKernel) {
		t.Errorf("Build(Spec{}) = %v, want ErrNoKernel", err)
	}
}

func TestSpecChangesPCRs(t *testing.T) {
	base, err := Build(baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*Spec)
		want   []int
	}{
		{"firmware", func(s *Spec) { s.Firmware = "OVMF 2023.05" }, []int{0}},
		{"boot_entry", func(s *Spec) { s.BootEntry = "UEFI HTTPv4" }, []int{1}},
		{"option_rom", func(s *Spec) { s.OptionROM = []byte("rom") }, []int{2}},
		{"loader", func(s *Spec) { s.Loader = []byte("ipxe 2") }, []int{4}},
		{"kernel", func(s *Spec) { s.Kernel = []byte("kernel 2") }, []int{4, 11}},
		{"secure_boot", func(s *Spec) { s.SecureBoot = true }, []int{7}},
		{"db", func(s *Spec) { s.DB = []byte("cert") }, []int{7}},
		{"cmdline", func(s *Spec) { s.Cmdline = "quiet" }, []int{8, 9, 11}},
		{"initrd", func(s *Spec) { s.Initrd = []byte("initramfs 2") }, []int{9, 11}},
		{"mok_list", func(s *Spec) { s.MokList = []byte("mok") }, []int{14}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.change(&s)
			b, err := Build(s)
			if err != nil {
				t.Fatal(err)
			}
			var changed []int
			for i, d := range b.PCRs() {
				if !bytes.Equal(d, base.PCRs()[i]) {
					changed = append(changed, i)
				}
			}
			slices.Sort(changed)
			if !slices.Equal(changed, tt.want) {
				t.Errorf("changed PCRs = %v, want %v", changed, tt.want)
			}
		})
	}
}

type recorder struct{ got []Extend }

func (r *recorder) ExtendPCR(pcr int, digest []byte) error {
	r.got = append(r.got, Extend{pcr, digest})
	return nil
}

func TestApply(t *testing.T) {
	b, err := Build(baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	if err := b.Apply(&r); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(r.got, b.Extends, func(a, b Extend) bool { return a.PCR == b.PCR && bytes.Equal(a.Digest, b.Digest) }) {
		t.Errorf("Apply extended %v, want %v", r.got, b.Extends)
	}
	if len(b.Extends) != len(b.Events)-1 {
		t.Errorf("%d extends for %d events (one EV_NO_ACTION)", len(b.Extends), len(b.Events))
	}
}

func TestEncode(t *testing.T) {
	b, err := Build(baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	if got := Encode(b.Events); !bytes.Equal(got, b.Log) {
		t.Errorf("Encode(b.Events) differs from b.Log")
	}
}
