package eventlog

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"
)

// moduleDir returns the module cache directory of a dependency, or "" if
// it is not in this module's graph.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Logf("module %s not available: %v", module, err)
		return ""
	}
	return dir
}

// TestRealFirmwareLogsKeepEventData runs the event data rule over the real
// crypto-agile logs that go-attestation and go-eventlog ship as test data
// (workstations, servers, and GCE/SEV/TDX VMs with OVMF-derived firmware):
// none may be refused, or ErrEventData would brick such machines.
func TestRealFirmwareLogsKeepEventData(t *testing.T) {
	var files []string
	for _, g := range []struct{ module, glob string }{
		{"github.com/google/go-attestation", "attest/testdata/*_eventlog"},
		{"github.com/google/go-eventlog", "testdata/eventlogs/tpm/*"},
	} {
		if dir := moduleDir(t, g.module); dir != "" {
			f, _ := filepath.Glob(filepath.Join(dir, g.glob))
			files = append(files, f...)
		}
	}
	if len(files) == 0 {
		t.Skip("no real event logs in the module cache")
	}
	checkedLogs := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		el, err := attest.ParseEventLog(raw)
		if err != nil || !slices.Contains(el.Algs, attest.HashSHA256) {
			continue // TPM 1.2 / SHA-1 only logs: Verify refuses them anyway
		}
		checkedLogs++
		for _, v := range el.Events(attest.HashSHA256) {
			if !dataMatches(v) {
				t.Errorf("%s: PCR %d %v: data (%d bytes) does not match digest %x", filepath.Base(f), v.Index, v.Type, len(v.Data), v.Digest)
			}
		}
	}
	if checkedLogs == 0 {
		t.Errorf("found %d log files but none with a sha256 bank", len(files))
	}
	t.Logf("checked %d real sha256 logs", checkedLogs)
}
