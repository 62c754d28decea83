package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// TestHistoryChangedComparesEveryField keeps historyChanged's field list
// in step with BootAttempt: each field, changed alone, is a change.
func TestHistoryChangedComparesEveryField(t *testing.T) {
	base := BootAttempt{Time: time.Unix(1800000000, 0).UTC(), Server: "s", Remote: "r", Outcome: "allowed", Check: "policy",
		Reason: "ok", AgentVersion: "v1", Duration: time.Second, Stages: []wire.StageTiming{{Name: "attest", Duration: time.Second}},
		Failed: "root", Error: "e"}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		changed := base
		changed.Stages = []wire.StageTiming{{Name: "attest", Duration: time.Second}}
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Slice:
			changed.Stages[0].Duration++
		case reflect.Struct:
			changed.Time = changed.Time.Add(time.Second)
		default:
			t.Fatalf("field %s of kind %v: teach this test and historyChanged", typ.Field(i).Name, f.Kind())
		}
		if !historyChanged(&Machine{History: []BootAttempt{base}}, &Machine{History: []BootAttempt{changed}}) {
			t.Errorf("a change of %s alone is not seen", typ.Field(i).Name)
		}
	}
	if historyChanged(&Machine{History: []BootAttempt{base}}, &Machine{History: []BootAttempt{base}}) {
		t.Error("an unchanged history is seen as changed")
	}
}

// MachineRecord and UpdateMachineRecord leave the history out: fn sees
// none and the stored history stays as it was.
func TestRecordWithoutHistory(t *testing.T) { forEachStore(t, testRecordWithoutHistory) }

func testRecordWithoutHistory(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddAttempts(ctx, []MachineAttempt{{MachineID: m.ID, Attempt: BootAttempt{Outcome: "refused", Check: "policy"}}}); err != nil {
		t.Fatal(err)
	}
	// A full update caches the record it wrote (with the history it read).
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	rec, err := db.MachineRecord(ctx, m.ID)
	if err != nil || rec.History != nil || rec.ID != m.ID {
		t.Fatalf("MachineRecord() = %+v, %v, want the record without history", rec, err)
	}
	got, err := db.UpdateMachineRecord(ctx, m.ID, func(m *Machine) error {
		if m.History != nil {
			t.Errorf("fn sees history %v", m.History)
		}
		m.BootCount++
		return nil
	})
	if err != nil || got.History != nil || got.BootCount != 1 {
		t.Fatalf("UpdateMachineRecord() = %+v, %v", got, err)
	}
	full, err := db.Machine(ctx, m.ID)
	if err != nil || len(full.History) != 1 || full.History[0].Check != "policy" || full.BootCount != 1 {
		t.Fatalf("Machine() = %+v, %v, want the one attempt and boot count 1", full, err)
	}
	if _, err := db.MachineRecord(ctx, testMachine(2).ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("MachineRecord(unknown) = %v, want ErrNotFound", err)
	}
}

// An attempt a record update adds (as a release adds its allowed one) is
// added to the stored history in the update's transaction, after what is
// there; the record returned has no history, and a failed update adds
// nothing.
func TestRecordUpdateAddsAttempt(t *testing.T) { forEachStore(t, testRecordUpdateAddsAttempt) }

func testRecordUpdateAddsAttempt(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1800000000, 0).UTC()
	if _, err := db.AddAttempts(ctx, []MachineAttempt{{m.ID, BootAttempt{Time: t0, Outcome: "pending", Reason: "0"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := db.UpdateMachineRecord(ctx, m.ID, func(m *Machine) error {
		m.BootCount++
		m.AddAttempt(BootAttempt{Time: t0.Add(time.Second), Outcome: "allowed", Reason: "1"})
		return nil
	})
	if err != nil || got.History != nil || got.BootCount != 1 {
		t.Fatalf("UpdateMachineRecord() = %+v, %v, want boot count 1 and no history", got, err)
	}
	refused := errors.New("refused")
	if _, err := db.UpdateMachineRecord(ctx, m.ID, func(m *Machine) error {
		m.AddAttempt(BootAttempt{Time: t0.Add(2 * time.Second), Outcome: "allowed", Reason: "aborted"})
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("UpdateMachineRecord(failing fn) = %v, want its error", err)
	}
	if rec, err := db.MachineRecord(ctx, m.ID); err != nil || rec.History != nil {
		t.Fatalf("MachineRecord() = %+v, %v, want no history", rec, err)
	}
	wantReasons(t, db, m.ID, "0", "1")
}

// Attempts are kept in time order, whatever order they are written in
// (the Recorder writes refusals up to a batch window after a release has
// written its allowed attempt), the last MaxHistory of them: an attempt
// older than every one a full history keeps is not added.
func TestAttemptsInTimeOrder(t *testing.T) { forEachStore(t, testAttemptsInTimeOrder) }

func testAttemptsInTimeOrder(t *testing.T, db testStore) {
	ctx := context.Background()
	m := testMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1800000000, 0).UTC()
	at := func(i int, reason string) BootAttempt {
		return BootAttempt{Time: t0.Add(time.Duration(i) * time.Second), Outcome: "refused", Reason: reason}
	}
	if _, err := db.UpdateMachineRecord(ctx, m.ID, func(m *Machine) error {
		m.AddAttempt(at(10, "10"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Written late, decided earlier; equal times keep the order written.
	if _, err := db.AddAttempts(ctx, []MachineAttempt{{m.ID, at(5, "5")}, {m.ID, at(10, "10b")}, {m.ID, at(1, "1")}}); err != nil {
		t.Fatal(err)
	}
	wantReasons(t, db, m.ID, "1", "5", "10", "10b")
	// With the lease store's release (which reads the whole history).
	if _, err := db.ReleaseWithLease(ctx, m.ID, "", "", func(m *Machine) error {
		m.AddAttempt(at(11, "11"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var batch []MachineAttempt
	for i := range MaxHistory - 5 {
		batch = append(batch, MachineAttempt{m.ID, at(20+i, fmt.Sprint(20+i))})
	}
	if _, err := db.AddAttempts(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "5", "10", "10b", "11"}
	for i := range MaxHistory - 5 {
		want = append(want, fmt.Sprint(20+i))
	}
	wantReasons(t, db, m.ID, want...)
	// Full: the oldest goes for a newer attempt; an older one is not added.
	if _, err := db.AddAttempts(ctx, []MachineAttempt{{m.ID, at(7, "7")}, {m.ID, at(0, "0")}}); err != nil {
		t.Fatal(err)
	}
	wantReasons(t, db, m.ID, append([]string{"5", "7", "10", "10b", "11"}, want[5:]...)...)
}

// wantReasons checks the reasons of machine id's history, oldest first.
func wantReasons(t *testing.T, db testStore, id string, want ...string) {
	t.Helper()
	full, err := db.Machine(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range full.History {
		got = append(got, a.Reason)
	}
	if !slices.Equal(got, want) {
		t.Errorf("history reasons = %q, want %q", got, want)
	}
}
