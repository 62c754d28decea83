package machines

import (
	"reflect"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// fullRecord returns a machine record with every field set.
func fullRecord() *store.Machine {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	bs := func(b byte) *store.BootState {
		return &store.BootState{
			PCRs: map[int][]byte{4: {b}},
			Events: []eventlog.Event{{PCR: 4, Sequence: 2, Type: 0x80000003,
				TypeName: "EV_EFI_BOOT_SERVICES_APPLICATION", Digest: []byte{b}, Description: "shim"}},
			At: at,
		}
	}
	return &store.Machine{
		ID: idA, Name: "web-1", State: store.StateNeedsReapproval,
		EKPublic: []byte{1}, EKCert: []byte{2}, AKPublic: []byte{3}, EKCertStatus: "verified",
		Hints:  wire.Hints{Hostname: "web-1", Firmware: "uefi"},
		Policy: store.PolicyPredicted, Approved: bs(4), Reported: bs(5), Diff: "PCR 4 changed",
		Root:  wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "debian"}},
		Group: "lab", ResetCount: 3, RestartCount: 1,
		Menu:      &store.Menu{Images: []string{"debian", "alpine"}, LocalDisk: true, Default: "image:alpine", Timeout: time.Second},
		FirstSeen: at, LastSeen: at, LastAddress: "10.0.0.5:4242", BootCount: 7, Reason: "changed",
		History: []store.BootAttempt{{Time: at, Server: "sr-1", Remote: "10.0.0.5:4242", Outcome: "refused",
			Check: "event-log", Reason: "PCR 15 is not zero", AgentVersion: "0.3.0", Duration: 41 * time.Millisecond}},
	}
}

// TestViewMachine_copies_every_field guards the record-to-view mapping:
// a field added to both but not mapped shows up here as zero.
func TestViewMachine_copies_every_field(t *testing.T) {
	rec := fullRecord()
	v := reflect.ValueOf(*ViewMachine(rec))
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("ViewMachine left api.Machine.%s zero", v.Type().Field(i).Name)
		}
	}
	view := ViewMachine(rec)
	for _, e := range []reflect.Value{reflect.ValueOf(*view.Approved), reflect.ValueOf(view.Approved.Events[0])} {
		for i := range e.NumField() {
			if e.Field(i).IsZero() {
				t.Errorf("ViewMachine left %s.%s zero", e.Type().Name(), e.Type().Field(i).Name)
			}
		}
	}
}

func TestViewMachine_shares_no_memory(t *testing.T) {
	rec := fullRecord()
	view := ViewMachine(rec)
	view.EKPublic[0] = 0xff
	view.Approved.PCRs[4][0] = 0xff
	view.Approved.Events[0].Digest[0] = 0xff
	view.Menu.Images[0] = "changed"
	if rec.EKPublic[0] == 0xff || rec.Approved.PCRs[4][0] == 0xff || rec.Approved.Events[0].Digest[0] == 0xff || rec.Menu.Images[0] == "changed" {
		t.Error("changing the view changed the record")
	}
}

func TestViewMachine_nil(t *testing.T) {
	if ViewMachine(nil) != nil || ViewGroup(nil) != nil {
		t.Error("view of nil is not nil")
	}
	m := ViewMachine(&store.Machine{ID: idA})
	if m.Approved != nil || m.Reported != nil || m.EKCert != nil {
		t.Errorf("view of a bare record = %+v, want absent boot states and EK certificate", m)
	}
}
