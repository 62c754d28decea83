package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/diskfull"
)

// A torn last line (a write cut short) is cut off at open, so the next
// record is a line of its own and the log reads back whole.
func TestOpenCutsTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	good := `{"action":"approve","outcome":"ok"}` + "\n"
	torn := `{"action":"attest","outc`
	if err := os.WriteFile(path, []byte(good+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Repaired(); got != int64(len(torn)) {
		t.Errorf("Repaired = %d, want %d", got, len(torn))
	}
	if err := l.Record(Entry{Action: "revoke", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(path)
	if err != nil || len(got) != 2 || got[0].Action != "approve" || got[1].Action != "revoke" {
		t.Fatalf("ReadAll = %+v, %v; want approve, revoke", got, err)
	}
}

func TestOpenKeepsWholeLines(t *testing.T) {
	for _, content := range []string{"", `{"action":"a"}` + "\n", strings.Repeat(`{"action":"b"}`+"\n", 1000)} {
		path := filepath.Join(t.TempDir(), "audit.log")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if l.Repaired() != 0 {
			t.Errorf("Repaired = %d on a log of whole lines", l.Repaired())
		}
		l.Close()
	}
}

// On a full filesystem Record fails with ErrNotWritten and leaves no
// partial line; once there is space again records follow on lines of
// their own and the whole log reads back.
func TestFullDisk(t *testing.T) {
	dir := diskfull.Mount(t, 256<<10)
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Record(Entry{Action: "before", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	free := diskfull.Fill(t, dir)
	long := strings.Repeat("x", 8000) // longer than any slack in the log's last page
	written := 1
	for {
		err := l.Record(Entry{Action: "filling", Outcome: "ok", Reason: long})
		if err != nil {
			if !errors.Is(err, ErrNotWritten) {
				t.Fatalf("Record on a full disk = %v, want ErrNotWritten", err)
			}
			break
		}
		if written++; written > 1000 {
			t.Fatal("the filesystem never filled up")
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		t.Fatalf("a failed write left a torn line: ...%q", raw[max(0, len(raw)-40):])
	}
	free()
	if err := l.Record(Entry{Action: "after", Outcome: "ok"}); err != nil {
		t.Fatalf("Record after space returned: %v", err)
	}
	got, err := ReadAll(path)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(got) != written+1 || got[0].Action != "before" || got[len(got)-1].Action != "after" {
		t.Errorf("ReadAll = %d entries (last %q), want %d ending with after", len(got), got[len(got)-1].Action, written+1)
	}
	if !bytes.HasSuffix(raw, []byte("\n")) {
		t.Error("log does not end in a newline")
	}
}
