package attest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// TestAttestEtcdQuorum: attestation through the real exchange (QUIC,
// simulator TPM) on a store in a three-member etcd cluster. With one
// member killed the cluster keeps its quorum and machines attest on; with
// two killed it has none, and an attestation is refused cleanly: the
// agent gets an error, not a credential, and the machine's record is what
// it was (no boot counted, no reset count moved, same version). With a
// member back, the quorum returns and the machine attests again.
func TestAttestEtcdQuorum(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 3)
	st, err := store.NewEtcd(ctx, c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, t.TempDir(), st)
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "node-1")
	attest := func() (*agentattest.Result, error) {
		m.reboot(t)
		return attestOnce(t, e.client(t, m.dev))
	}
	if _, err := attest(); err != nil {
		t.Fatalf("attest with three members: %v", err)
	}

	c.Stop(2)
	for i := range 2 {
		if _, err := attest(); err != nil {
			t.Fatalf("attest %d with one member of three down: %v", i, err)
		}
	}
	before, err := st.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}

	c.Stop(1)
	start := time.Now()
	res, err := attest()
	t.Logf("attest without quorum: %v after %v", err, time.Since(start))
	if err == nil {
		t.Fatalf("attest without quorum released a credential: %+v", res.Payload)
	}
	e.wantRefused(t, err, m.id, "store-unavailable")
	if d := time.Since(start); d > time.Minute/2 {
		t.Errorf("the refusal took %v: a store without quorum must not hold the exchange", d)
	}

	c.Restart(1)
	after, err := st.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootCount != before.BootCount || after.ResetCount != before.ResetCount || after.Version != before.Version {
		t.Fatalf("a refused attestation changed the record: boots %d -> %d, reset count %d -> %d, version %d -> %d",
			before.BootCount, after.BootCount, before.ResetCount, after.ResetCount, before.Version, after.Version)
	}

	// The quorum is lost in the middle of an exchange: after the server
	// read the machine and sent its challenge, while the agent gathers
	// its evidence. The release cannot commit; the agent is refused and
	// the record is what it was.
	read := m.dev.ReadEventLog
	var once sync.Once
	m.dev.ReadEventLog = func() ([]byte, error) {
		once.Do(func() { c.Stop(1) })
		return read()
	}
	_, err = attest()
	m.dev.ReadEventLog = read
	e.wantRefused(t, err, m.id, "store-unavailable")
	c.Restart(1)
	after, err = st.Machine(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootCount != before.BootCount || after.ResetCount != before.ResetCount || after.Version != before.Version {
		t.Fatalf("a refused attestation changed the record: boots %d -> %d, reset count %d -> %d, version %d -> %d",
			before.BootCount, after.BootCount, before.ResetCount, after.ResetCount, before.Version, after.Version)
	}
	if _, err := attest(); err != nil {
		t.Fatalf("attest after the quorum returned: %v", err)
	}
	if got, _ := st.Machine(ctx, m.id); got.BootCount != before.BootCount+1 {
		t.Fatalf("boot count %d after the quorum returned, want %d", got.BootCount, before.BootCount+1)
	}
}
