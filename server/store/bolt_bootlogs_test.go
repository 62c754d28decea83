package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// Boot logs are bounded in number and size, leave Version alone, and go
// with their machine.
func TestBootLogs(t *testing.T) { forEachStore(t, testBootLogs) }

func testBootLogs(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	before, _ := db.Machine(ctx, m.ID)
	for i := range MaxBootLogs + 2 {
		if err := db.PutBootLog(ctx, m.ID, BootLog{Time: time.Unix(int64(i), 0), Log: fmt.Sprintf("boot %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("x", MaxBootLogSize) + "tail"
	if err := db.PutBootLog(ctx, m.ID, BootLog{Log: big}); err != nil {
		t.Fatal(err)
	}
	logs, err := db.BootLogs(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != MaxBootLogs || logs[0].Log != "boot 3" {
		t.Errorf("BootLogs = %d logs, first %q, want %d, first %q", len(logs), logs[0].Log, MaxBootLogs, "boot 3")
	}
	if last := logs[len(logs)-1].Log; len(last) != MaxBootLogSize || !strings.HasSuffix(last, "tail") {
		t.Errorf("oversized log stored as %d bytes, want its tail of %d", len(last), MaxBootLogSize)
	}
	after, _ := db.Machine(ctx, m.ID)
	if after.Version != before.Version {
		t.Errorf("Version %d -> %d after boot logs, want unchanged", before.Version, after.Version)
	}
	if err := db.PutBootLog(ctx, "nope", BootLog{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("PutBootLog(unknown machine) = %v, want ErrNotFound", err)
	}
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if logs, err := db.BootLogs(ctx, m.ID); err != nil || len(logs) != 0 {
		t.Errorf("BootLogs after DeleteMachine = %d, %v, want none", len(logs), err)
	}
}

// Stage timings on an attempt are seen fields: they leave Version alone
// and survive the cache's copies.
func TestAttemptStagesAreSeen(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	m := testMachine(2)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	before, _ := db.Machine(ctx, m.ID)
	_, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error {
		m.AddAttempt(BootAttempt{Outcome: "allowed", Stages: []wire.StageTiming{{Name: "attest", Duration: time.Second}}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := db.Machine(ctx, m.ID)
	if got.Version != before.Version || len(got.History) != 1 || got.History[0].Stages[0].Duration != time.Second {
		t.Errorf("after adding stages: version %d (was %d), history %+v", got.Version, before.Version, got.History)
	}
	got.History[0].Stages[0].Name = "changed"
	if again, _ := db.Machine(ctx, m.ID); again.History[0].Stages[0].Name != "attest" {
		t.Errorf("changing a returned machine's stages changed the store's copy")
	}
}
