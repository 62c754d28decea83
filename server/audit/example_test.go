package audit_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sealroot/sealroot/server/audit"
)

func ExampleLog_Record() {
	dir, _ := os.MkdirTemp("", "sealroot-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Name the check that failed; never put a secret value in Reason.
	l.Record(audit.Entry{Actor: "agent", MachineID: "6b86b273", Action: "attest", Outcome: "refused", Check: "quote-signature"})
	if err := l.Close(); err != nil {
		fmt.Println(err)
		return
	}
	entries, _ := audit.ReadAll(path)
	fmt.Println(entries[0].Action, entries[0].Outcome, entries[0].Check)
	// Output: attest refused quote-signature
}
