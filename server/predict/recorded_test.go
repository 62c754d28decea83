package predict

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/store"
)

// TestPrediction_matches_recorded_firmware_log checks predictions made
// from real UKIs against what OVMF, iPXE, systemd-stub 252 and Linux 6.1
// measured when booting them (testdata/*/README): through the EFI shell,
// and through PXE and Debian's iPXE (ipxe.efi, or the NIC's iPXE option
// ROM) as vm-tests boots them.
func TestPrediction_matches_recorded_firmware_log(t *testing.T) {
	t.Run("ovmf_shell", testRecordedShellBoot)
	t.Run("ovmf_pxe_ipxe_efi", func(t *testing.T) { testRecordedPXEBoot(t, "testdata/ovmf-pxe-ipxe-uki/", true) })
	t.Run("ovmf_ipxe_rom", func(t *testing.T) { testRecordedPXEBoot(t, "testdata/ovmf-ipxe-rom-uki/", false) })
}

func testRecordedShellBoot(t *testing.T) {
	dir := "testdata/ovmf-shell-uki/"
	raw, err := os.ReadFile(dir + "eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "prediction.json")
	if err != nil {
		t.Fatal(err)
	}
	var p Prediction
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatal(err)
	}
	byPCR := map[int][]attest.Event{}
	for _, e := range el.Events(attest.HashSHA256) {
		byPCR[e.Index] = append(byPCR[e.Index], e)
	}
	// PCR 4: the EFI shell (not predicted: it stands in for iPXE), then
	// the UKI and the kernel inside it.
	var apps [][]byte
	for _, e := range byPCR[PCRBootApps] {
		if e.Type.String() == "EV_EFI_BOOT_SERVICES_APPLICATION" {
			apps = append(apps, e.Digest)
		}
	}
	if len(apps) != 3 || !bytes.Equal(apps[1], p.BootApps[1].Digest) || !bytes.Equal(apps[2], p.BootApps[2].Digest) {
		t.Errorf("PCR 4 applications %x, want [shell, %x (UKI), %x (kernel)]", apps, p.BootApps[1].Digest, p.BootApps[2].Digest)
	}
	// PCR 11: every section event, and the value they replay to.
	var got []Event
	for _, e := range byPCR[PCRKernelImage] {
		got = append(got, Event{Digest: e.Digest})
	}
	if len(got) != len(p.KernelImage) {
		t.Fatalf("PCR 11: %d events, predicted %d", len(got), len(p.KernelImage))
	}
	for i := range got {
		if !bytes.Equal(got[i].Digest, p.KernelImage[i].Digest) {
			t.Errorf("PCR 11 event %d: measured %x, predicted %s %x", i, got[i].Digest, p.KernelImage[i].Name, p.KernelImage[i].Digest)
		}
	}
	if v := Replay(got); !bytes.Equal(v, p.PCR11) {
		t.Errorf("PCR 11 replays to %x, predicted %x", v, p.PCR11)
	}
	// PCR 12: the shell passed the arguments without an image name; the
	// measurement is their UTF-16LE text with NUL, as predicted for iPXE.
	shell := sha256.Sum256(utf16z("console=ttyS0"))
	if len(byPCR[PCRKernelCommand]) != 1 || !bytes.Equal(byPCR[PCRKernelCommand][0].Digest, shell[:]) {
		t.Errorf("PCR 12 events %v, want one of %x", byPCR[PCRKernelCommand], shell)
	}
}

// testRecordedPXEBoot checks a verified boot state the server recorded for
// a PXE boot of a UKI against the prediction it made from the artifacts it
// served. withIPXE: the firmware fetched and ran ipxe.efi; without it the
// NIC's iPXE option ROM ran the script, so no iPXE application was loaded.
func testRecordedPXEBoot(t *testing.T, dir string, withIPXE bool) {
	var bs store.BootState
	var p Prediction
	for name, v := range map[string]any{"bootstate.json": &bs, "prediction.json": &p} {
		b, err := os.ReadFile(dir + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	byPCR := map[int][]eventlog.Event{}
	for _, e := range bs.Events {
		byPCR[e.PCR] = append(byPCR[e.PCR], e)
	}
	digests := func(pcr int) []Event {
		var out []Event
		for _, e := range byPCR[pcr] {
			out = append(out, Event{Name: e.Description, Digest: e.Digest})
		}
		return out
	}
	// The recorded events replay to the quoted values.
	for _, pcr := range []int{PCRBootApps, PCRKernelImage, PCRKernelCommand} {
		if v := Replay(digests(pcr)); !bytes.Equal(v, bs.PCRs[pcr]) {
			t.Errorf("PCR %d: events replay to %x, quoted %x", pcr, v, bs.PCRs[pcr])
		}
	}
	// PCR 4: the loaded applications (iPXE's LoadImage probe repeats the
	// UKI's event) are the predicted ones, in order.
	var apps [][]byte
	for _, e := range byPCR[PCRBootApps] {
		if e.TypeName == "EV_EFI_BOOT_SERVICES_APPLICATION" && (len(apps) == 0 || !bytes.Equal(apps[len(apps)-1], e.Digest)) {
			apps = append(apps, e.Digest)
		}
	}
	want := p.BootApps
	if !withIPXE {
		want = want[1:]
	}
	if len(apps) != len(want) {
		t.Fatalf("PCR 4: %d applications %x, predicted %d", len(apps), apps, len(want))
	}
	for i := range want {
		if !bytes.Equal(apps[i], want[i].Digest) {
			t.Errorf("PCR 4 application %d: measured %x, predicted %s %x", i+1, apps[i], want[i].Name, want[i].Digest)
		}
	}
	// PCR 11: every section event, and the value.
	got := digests(PCRKernelImage)
	if len(got) != len(p.KernelImage) {
		t.Fatalf("PCR 11: %d events, predicted %d", len(got), len(p.KernelImage))
	}
	for i := range got {
		if !bytes.Equal(got[i].Digest, p.KernelImage[i].Digest) {
			t.Errorf("PCR 11 event %d: measured %x, predicted %s %x", i, got[i].Digest, p.KernelImage[i].Name, p.KernelImage[i].Digest)
		}
	}
	if !bytes.Equal(bs.PCRs[PCRKernelImage], p.PCR11) {
		t.Errorf("PCR 11 quoted %x, predicted %x", bs.PCRs[PCRKernelImage], p.PCR11)
	}
	// PCR 12: iPXE's command line, the image name first.
	cmd := digests(PCRKernelCommand)
	if !strings.HasPrefix(p.Cmdline.Name, "uki.efi ") || len(cmd) != 1 ||
		!bytes.Equal(cmd[0].Digest, p.Cmdline.Digest) || cmd[0].Name != p.Cmdline.Name {
		t.Errorf("PCR 12 events %+v, predicted one %q %x", cmd, p.Cmdline.Name, p.Cmdline.Digest)
	}
	if !bytes.Equal(bs.PCRs[PCRKernelCommand], p.PCR12) {
		t.Errorf("PCR 12 quoted %x, predicted %x", bs.PCRs[PCRKernelCommand], p.PCR12)
	}
}
