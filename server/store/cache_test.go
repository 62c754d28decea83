package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fill sets every field reachable from v to a non-zero value, so a clone
// test sees fields added later too.
func fill(t *testing.T, v reflect.Value, n int) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), n+i)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), n+i)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k, n)
		fill(t, e, n)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("s")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n + 1))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n + 1))
	default:
		t.Fatalf("fill: unhandled kind %v", v.Kind())
	}
}

// shared reports the first pointer, slice or map reachable from both a and
// b at the same address.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		if a.Type().String() == "time.Time" {
			return "" // a value; its location pointer is shared by design
		}
		for i := range a.NumField() {
			if !a.Type().Field(i).IsExported() {
				continue
			}
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := range a.Len() {
			if p := shared(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for _, k := range a.MapKeys() {
			if p := shared(a.MapIndex(k), b.MapIndex(k), path+"[k]"); p != "" {
				return p
			}
		}
	}
	return ""
}

// TestClone fills every field of a Machine, including fields added after
// clone was written: the clone must equal the original and share nothing
// with it, or a caller changing a returned machine would change the cache.
func TestClone(t *testing.T) {
	m := new(Machine)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Type.String() != "time.Time" {
			fill(t, v.Field(i), i)
		}
	}
	c := m.clone()
	if !reflect.DeepEqual(m, c) {
		t.Fatalf("clone() = %+v, want %+v", c, m)
	}
	if p := shared(reflect.ValueOf(m), reflect.ValueOf(c), "Machine"); p != "" {
		t.Errorf("clone() shares %s with the original", p)
	}
}

// The cache must return what is stored, never what a caller did to a
// machine it was given, and follow every write.
func TestCacheFollowsStore(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	m := enrolledMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Name = "changed-by-caller"
	got, err := db.Machine(ctx, m.ID)
	if err != nil || got.Name != "m1" {
		t.Fatalf("Machine() after the caller changed its copy = %q, %v; want m1", got.Name, err)
	}
	got.Approved.Events[0].Digest[0] ^= 0xff
	got.Approved.PCRs[0][0] ^= 0xff
	again, _ := db.Machine(ctx, m.ID)
	if !reflect.DeepEqual(again.Approved, enrolledMachine(1).Approved) {
		t.Fatal("Machine() returned the caller's changes to an earlier result")
	}
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.BootCount = 99; return nil }); err != nil {
		t.Fatal(err)
	}
	ms, err := db.Machines(ctx)
	if err != nil || len(ms) != 1 || ms[0].BootCount != 99 {
		t.Fatalf("Machines() after UpdateMachine = %v, %v; want BootCount 99", ms, err)
	}
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Machine(ctx, m.ID); err == nil {
		t.Fatal("Machine() after DeleteMachine found the machine")
	}
}

// An update function may change the machine it is given in place, boot
// states included: the change is detected and stored, and a refused
// update (fn's error) leaves the stored machine and the cache as they
// were. (applyUpdate compares against the cache's own copy, so fn must
// get a deep copy.)
func TestUpdateInPlace(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	m := enrolledMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	_, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error {
		m.Approved.PCRs[0][0] ^= 0xff
		m.Approved.Events[0].Digest[0] ^= 0xff
		m.EKPublic[0] ^= 0xff
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("UpdateMachine(refused) = %v", err)
	}
	if got, _ := db.Machine(ctx, m.ID); !reflect.DeepEqual(got.Approved, m.Approved) || !reflect.DeepEqual(got.EKPublic, m.EKPublic) {
		t.Fatal("a refused update's in-place changes reached the stored machine or the cache")
	}
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.Approved.PCRs[0][0] ^= 0xff; return nil }); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Machine(ctx, m.ID)
	if got.Approved.PCRs[0][0] != m.Approved.PCRs[0][0]^0xff {
		t.Fatal("an in-place change of an approved PCR was not stored")
	}
	db.cache.remove(m.ID) // decoded from the stored bytes
	if fresh, _ := db.Machine(ctx, m.ID); !reflect.DeepEqual(fresh.Approved, got.Approved) {
		t.Fatal("the cache and the stored record differ after an in-place change")
	}
}

// Recording a boot writes only the seen record; the machine record, with
// its boot states, stays as it was. Other changes rewrite it.
func TestBootWritesOnlySeen(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	m := enrolledMachine(1)
	if err := db.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	raw := func() string {
		var v []byte
		db.bolt.View(func(tx *bolt.Tx) error {
			v = append(v, tx.Bucket(bucketMachines).Get([]byte(m.ID))...)
			return nil
		})
		return string(v)
	}
	before := raw()
	got, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.BootCount++; m.ResetCount = 7; return nil })
	if err != nil || got.BootCount != 13 || got.ResetCount != 7 {
		t.Fatalf("UpdateMachine(boot) = %+v, %v", got, err)
	}
	if raw() != before {
		t.Error("a boot rewrote the machine record")
	}
	if again, _ := db.Machine(ctx, m.ID); again.BootCount != 13 || again.ResetCount != 7 {
		t.Errorf("Machine() after a boot = BootCount %d ResetCount %d, want 13 7", again.BootCount, again.ResetCount)
	}
	if _, err := db.UpdateMachine(ctx, m.ID, func(m *Machine) error { m.State = StateRevoked; return nil }); err != nil {
		t.Fatal(err)
	}
	if raw() == before {
		t.Error("revoking did not rewrite the machine record")
	}
	if ms, _ := db.Machines(ctx); len(ms) != 1 || ms[0].State != StateRevoked || ms[0].BootCount != 13 {
		t.Errorf("Machines() = %+v, want the revoked machine with BootCount 13", ms)
	}
	if err := db.DeleteMachine(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSeen).Get([]byte(m.ID)) != nil {
			t.Error("DeleteMachine left the seen record")
		}
		return nil
	})
}

// A schema 1 database (no seen bucket, boot fields in the record) opens,
// is upgraded and reads the same.
func TestUpgradeSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := enrolledMachine(2)
	buf, _ := json.Marshal(m)
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketSeen); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keyVersion, []byte("1")); err != nil {
			return err
		}
		return putMachine(tx, m.ID, m.Name, "", buf)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open(schema 1) = %v", err)
	}
	defer db2.Close()
	got, err := db2.Machine(context.Background(), m.ID)
	if err != nil || got.BootCount != m.BootCount || !got.LastSeen.Equal(m.LastSeen) {
		t.Fatalf("Machine() from schema 1 = %+v, %v", got, err)
	}
}
