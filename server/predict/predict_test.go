package predict

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/sealroot/sealroot/uki"
)

// TestArtifacts returns a UKI built from Debian's stub with small
// synthetic parts, and Debian's ipxe.efi; it skips without them.
func testArtifacts(t *testing.T, initrd string) Artifacts {
	t.Helper()
	ipxe, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		testenv.Unavailable(t, "Debian iPXE: %v", err)
	}
	stub, err := os.ReadFile(uki.DefaultStub)
	if err != nil {
		testenv.Unavailable(t, "systemd stub: %v", err)
	}
	// The kernel must be a PE image: reuse the stub as a stand-in.
	image, err := uki.Build(stub, uki.Parts{Linux: stub, Initrd: []byte(initrd), Cmdline: "console=ttyS0", OSRel: []byte("ID=sealroot\n")}.Sections())
	if err != nil {
		t.Fatal(err)
	}
	return Artifacts{IPXE: ipxe, UKI: image, UKIName: "uki.efi", Cmdline: "console=ttyS0 panic=10"}
}

func sha(b []byte) []byte { d := sha256.Sum256(b); return d[:] }

func TestPredict(t *testing.T) {
	a := testArtifacts(t, "initramfs")
	p, err := Predict(a)
	if err != nil {
		t.Fatal(err)
	}
	ipxe, _ := uki.Authenticode(a.IPXE)
	image, _ := uki.Authenticode(a.UKI)
	stub, _ := os.ReadFile(uki.DefaultStub)
	kernel, _ := uki.Authenticode(stub)
	for i, want := range [][]byte{ipxe[:], image[:], kernel[:]} {
		if !bytes.Equal(p.BootApps[i].Digest, want) {
			t.Errorf("boot app %d (%s): got %x want %x", i, p.BootApps[i].Name, p.BootApps[i].Digest, want)
		}
	}
	// PCR 11: name+NUL then content, in systemd-stub 252's order.
	want := []Event{
		{".linux name", sha([]byte(".linux\x00"))}, {".linux", sha(stub)},
		{".osrel name", sha([]byte(".osrel\x00"))}, {".osrel", sha([]byte("ID=sealroot\n"))},
		{".cmdline name", sha([]byte(".cmdline\x00"))}, {".cmdline", sha([]byte("console=ttyS0"))},
		{".initrd name", sha([]byte(".initrd\x00"))}, {".initrd", sha([]byte("initramfs"))},
	}
	if len(p.KernelImage) != len(want) {
		t.Fatalf("PCR 11: %d events, want %d", len(p.KernelImage), len(want))
	}
	for i := range want {
		if p.KernelImage[i].Name != want[i].Name || !bytes.Equal(p.KernelImage[i].Digest, want[i].Digest) {
			t.Errorf("PCR 11 event %d: got %s %x want %s %x", i, p.KernelImage[i].Name, p.KernelImage[i].Digest, want[i].Name, want[i].Digest)
		}
	}
	// PCR 12: UTF-16LE "uki.efi console=ttyS0 panic=10" and NUL.
	var u16 []byte
	for _, c := range "uki.efi console=ttyS0 panic=10\x00" {
		u16 = append(u16, byte(c), 0)
	}
	if p.Cmdline.Name != "uki.efi console=ttyS0 panic=10" || !bytes.Equal(p.Cmdline.Digest, sha(u16)) {
		t.Errorf("PCR 12 event: %q %x", p.Cmdline.Name, p.Cmdline.Digest)
	}
	if !bytes.Equal(p.PCR12, sha(append(make([]byte, 32), sha(u16)...))) {
		t.Errorf("PCR 12 value %x", p.PCR12)
	}
}

func TestPredict_refuses(t *testing.T) {
	a := testArtifacts(t, "initramfs")
	stub, _ := os.ReadFile(uki.DefaultStub)
	noLinux, _ := uki.Build(stub, []uki.Section{{Name: ".initrd", Data: []byte("x"), VirtualSize: 1}})
	tests := []struct {
		name string
		edit func(*Artifacts)
		want error
	}{
		{"no_ipxe", func(a *Artifacts) { a.IPXE = nil }, ErrArtifacts},
		{"no_name", func(a *Artifacts) { a.UKIName = "" }, ErrArtifacts},
		{"uki_without_linux", func(a *Artifacts) { a.UKI = noLinux }, ErrArtifacts},
		{"uki_not_pe", func(a *Artifacts) { a.UKI = []byte("MZ nonsense") }, uki.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := a
			tt.edit(&b)
			if _, err := Predict(b); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCache_follows_file_changes(t *testing.T) {
	dir := t.TempDir()
	a := testArtifacts(t, "one")
	f := Files{IPXE: filepath.Join(dir, "ipxe.efi"), UKI: filepath.Join(dir, "uki.efi"), UKIName: "uki.efi", Cmdline: a.Cmdline}
	os.WriteFile(f.IPXE, a.IPXE, 0o644)
	os.WriteFile(f.UKI, a.UKI, 0o644)
	c := NewCache(f)
	p1, err := c.Prediction()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Prediction(); again != p1 {
		t.Error("unchanged files were predicted again")
	}
	b := testArtifacts(t, "two, longer")
	os.WriteFile(f.UKI, b.UKI, 0o644)
	os.Chtimes(f.UKI, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	p2, err := c.Prediction()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(p1.PCR11, p2.PCR11) {
		t.Error("new UKI, same PCR 11 prediction")
	}
}
