package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealroot/sealroot/wire"
)

// testHistory is n attempts of every kind: with and without stage
// timings, refusals with a check and reason, times in UTC and in a fixed
// zone.
func testHistory(n int) []BootAttempt {
	h := make([]BootAttempt, n)
	for i := range h {
		a := BootAttempt{
			Time:   time.Unix(1800000000+int64(i)*60, int64(i)).UTC(),
			Server: "s" + strconv.Itoa(i%3), Remote: "10.0.0." + strconv.Itoa(i) + ":4433",
			Outcome: "allowed", AgentVersion: "v0.9." + strconv.Itoa(i), Duration: time.Duration(i) * time.Millisecond,
		}
		switch i % 4 {
		case 1:
			a.Outcome, a.Check, a.Reason = "refused", "quote-signature", "quote signed by another key: «ü»"
		case 2:
			a.Stages = []wire.StageTiming{{Name: "dhcp", Duration: 1500 * time.Millisecond}, {Name: "attest", Duration: 0}}
			a.Failed, a.Error = "root", "mount: no such device"
		case 3:
			a.Time = a.Time.In(time.FixedZone("", 3600))
		}
		h[i] = a
	}
	return h
}

// writeV5 writes a schema 5 database as sealroot wrote it before history
// values: a bucket per machine in bucket history, 8-byte sequence keys,
// JSON attempts. Each machine gets history[id].
func writeV5(t *testing.T, path string, ms []*Machine, history map[string][]BootAttempt) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		for _, n := range []string{"meta", "machines", "names", "secrets", "groups", "seen", "history", "dhcp_leases", "dhcp_reservations", "boot_logs"} {
			if _, err := tx.CreateBucket([]byte(n)); err != nil {
				return err
			}
		}
		for _, m := range ms {
			raw, _ := json.Marshal(m)
			tx.Bucket([]byte("machines")).Put([]byte(m.ID), raw)
			tx.Bucket([]byte("names")).Put([]byte(m.Name), []byte(m.ID))
			h := history[m.ID]
			if h == nil {
				continue
			}
			hb, err := tx.Bucket([]byte("history")).CreateBucket([]byte(m.ID))
			if err != nil {
				return err
			}
			for _, a := range h {
				seq, _ := hb.NextSequence()
				v, _ := json.Marshal(a)
				if err := hb.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
					return err
				}
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte("5"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Opening a schema 5 database moves every machine's history from its
// bucket into one value and loses nothing: each attempt reads back as
// before (times with their zones, stage timings, reasons), a machine
// without history has none, and appending keeps the last MaxHistory.
func TestMigrateHistoryBucketsToValues(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	full, short, none := testMachine(1), testMachine(2), testMachine(3)
	want := map[string][]BootAttempt{full.ID: testHistory(MaxHistory), short.ID: testHistory(3)}
	writeV5(t, path, []*Machine{full, short, none}, want)

	db, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open(schema 5) = %v", err)
	}
	defer db.Close()
	for _, m := range []*Machine{full, short, none} {
		got, err := db.Machine(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.History, want[m.ID]) {
			t.Errorf("history of %s after migration:\n got %+v\nwant %+v", m.Name, got.History, want[m.ID])
		}
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(bucketMeta).Get(keyVersion)); v != strconv.Itoa(SchemaVersion) {
			t.Errorf("version = %q, want %d", v, SchemaVersion)
		}
		return tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			if v == nil {
				t.Errorf("history of %s is still a bucket", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	next := BootAttempt{Time: time.Unix(1900000000, 0).UTC(), Outcome: "revoked", Check: "revoked", Reason: "lost"}
	if _, err := db.AddAttempts(ctx, []MachineAttempt{{full.ID, next}, {none.ID, next}}); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Machine(ctx, full.ID)
	if wantFull := append(want[full.ID][1:], next); !reflect.DeepEqual(got.History, wantFull) {
		t.Errorf("history after an append = %+v, want the last %d", got.History, MaxHistory)
	}
	if got, _ := db.Machine(ctx, none.ID); !reflect.DeepEqual(got.History, []BootAttempt{next}) {
		t.Errorf("history of a machine that had none = %+v, want the one attempt", got.History)
	}
}

// Every attempt encodes and decodes to itself; a truncated or extended
// value is refused as malformed, never misread.
func TestAttemptCodec(t *testing.T) {
	h := testHistory(2 * MaxHistory)
	var v []byte
	for _, a := range h {
		var err error
		if v, err = appendAttempt(v, a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := decodeAttempts(v)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("decodeAttempts = %+v, %v\nwant %+v", got, err, h)
	}
	for n := 1; n < len(v); n++ { // an error, or the attempts before the cut
		if got, err := decodeAttempts(v[:n]); err == nil && !reflect.DeepEqual(got, h[:len(got)]) {
			t.Fatalf("decodeAttempts(first %d of %d bytes) = %+v, want an error or the first attempts", n, len(v), got)
		}
	}
	one, _ := appendAttempt(nil, h[2])
	body, _, _ := nextAttempt(one)
	if _, err := decodeAttempt(append(body, 0)); !errors.Is(err, errAttempt) {
		t.Errorf("decodeAttempt(a byte too many) = %v, want errAttempt", err)
	}
	if _, err := decodeAttempt(append([]byte{attemptFormat + 1}, body[1:]...)); !errors.Is(err, errAttempt) {
		t.Errorf("decodeAttempt(unknown format) = %v, want errAttempt", err)
	}
}

// FuzzDecodeAttempts: no value decodes with a panic, and what decodes
// encodes to the same bytes.
func FuzzDecodeAttempts(f *testing.F) {
	for _, a := range testHistory(4) {
		v, _ := appendAttempt(nil, a)
		f.Add(v)
	}
	f.Add([]byte{})
	f.Add([]byte{0x05, attemptFormat, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		h, err := decodeAttempts(v)
		if err != nil {
			return
		}
		var again []byte
		for _, a := range h {
			if again, err = appendAttempt(again, a); err != nil {
				t.Fatalf("appendAttempt(%+v) = %v", a, err)
			}
		}
		if _, err := decodeAttempts(again); err != nil {
			t.Fatalf("re-encoded history does not decode: %v", err)
		}
	})
}
