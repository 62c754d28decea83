// Package audittest holds helpers for tests that read a server's audit
// log while the server writes it.
package audittest

import (
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/audit"
)

// WaitRefused waits up to 10 seconds until the newest attestation entry
// of machine id in the audit log at path is a refusal by check, and fails
// t if it does not come.
func WaitRefused(t testing.TB, path, id, check string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, err := audit.ReadAll(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(entries) - 1; i >= 0; i-- {
			if e := entries[i]; e.MachineID == id && e.Action == "attest" {
				if e.Outcome == "refused" && e.Check == check {
					return
				}
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no refusal by %s of %s in %s after 10s", check, id, path)
}
