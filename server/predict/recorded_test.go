package predict

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-attestation/attest"
)

// TestPrediction_matches_recorded_firmware_log checks a prediction made
// from a real UKI against what OVMF, systemd-stub 252 and Linux 6.1
// measured when booting it (testdata/ovmf-shell-uki/README).
func TestPrediction_matches_recorded_firmware_log(t *testing.T) {
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
