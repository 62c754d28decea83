package attest_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	agentiscsi "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/agent/login"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/letgo"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// TestPerUserRootLetGo: a user's root lease ends without an operator
// once its machine has let go: at once when the initiator logs out (a
// real libiscsi logout), after the grace when the session is lost and
// the tunnel peer is silent, never while the peer still handshakes, and
// never for a later boot or another machine's lease.
func TestPerUserRootLetGo(t *testing.T) {
	const grace = 400 * time.Millisecond
	ends := make(chan rootiscsi.UserRootEnd, 16)
	var wp atomic.Pointer[letgo.Watcher]
	r := newRootEnv(t, func(c *rootiscsi.Config) {
		c.UserRootEnded = func(e rootiscsi.UserRootEnd) {
			wp.Load().Ended(e)
			select {
			case ends <- e:
			default:
			}
		}
	})
	var logs testenv.Buffer
	e := newEnv(t, withLogins(t), captureLog(t, &logs), withRoots(r.p))
	ctx := context.Background()
	h, err := users.Hash([]byte(alicePW), fastHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.PutUser(ctx, &store.User{Name: "alice", Hash: h}, true); err != nil {
		t.Fatal(err)
	}
	perUser := wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "tiny", wire.PerUserParam: "true"}}
	sim := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, sim, "desk-1")
	setRoot(t, e, sim.id, perUser)
	m1 := &loginMachine{dev: sim.dev, id: sim.id}
	m2 := newLoginMachine(t, 1)
	if _, err := attestOnce(t, e.client(t, m2.dev, func(c *agentattest.Config) { c.NoUnseal = true })); err == nil {
		t.Fatal("unknown machine attested")
	}
	if _, err := e.mgr.Approve(ctx, m2.id[:16], api.ApproveOptions{Name: "desk-2"}); err != nil {
		t.Fatal(err)
	}
	setRoot(t, e, m2.id, perUser)

	// The machines' tunnel peers handshake now, until silent is set.
	var silent atomic.Pointer[time.Time]
	var noPeer atomic.Bool
	lastHandshake := func(string) (time.Time, bool) {
		if noPeer.Load() {
			return time.Time{}, false
		}
		if t := silent.Load(); t != nil {
			return *t, true
		}
		return time.Now(), true
	}
	w, err := letgo.New(letgo.Config{Targets: r.p, Leases: e.db, LastHandshake: lastHandshake,
		Grace: grace, Audit: e.audit, Logger: testenv.Logger(t, "", hclog.Debug)})
	if err != nil {
		t.Fatal(err)
	}
	wp.Store(w)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	alice := roots.UserRootKey("alice")
	nextEnd := func(loggedOut bool) rootiscsi.UserRootEnd {
		t.Helper()
		select {
		case got := <-ends:
			if got.LoggedOut != loggedOut || got.User != "alice" {
				t.Fatalf("session end = %+v, want alice's with LoggedOut %v", got, loggedOut)
			}
			return got
		case <-time.After(10 * time.Second):
			t.Fatal("no session end reported")
		}
		return rootiscsi.UserRootEnd{}
	}
	leaseOf := func(id string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			l := e.lease(t, "alice")
			if l != nil && l.MachineID == id || l == nil && id == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("alice's lease = %+v, want machine %.12q", l, id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	res, err := attestOnce(t, e.loginClient(t, m1, typed("alice", alicePW)))
	if err != nil {
		t.Fatalf("alice on desk-1: %v", err)
	}
	p := res.Payload
	con := typed("alice", alicePW)
	if _, err := attestOnce(t, e.loginClient(t, m2, con)); !errors.Is(err, login.ErrAborted) || !strings.Contains(con.out.String(), "is in use on machine desk-1") {
		t.Fatalf("alice on desk-2 while desk-1 holds her root: %v\n%s", err, con.out.String())
	}

	// The session is lost while the tunnel peer still handshakes: the
	// machine is there (a network blip): the lease stays.
	conn, err := net.Dial("tcp", p.Root.Params[wire.ISCSIPortal])
	if err != nil {
		t.Fatal(err)
	}
	_, err = agentiscsi.Login(ctx, conn, agentiscsi.Config{
		InitiatorName: p.Root.Params[wire.ISCSIInitiator], TargetName: p.Root.Params[wire.ISCSITarget],
		ISID: [6]byte{0x80, 0, 0, 0, 0, 1},
		CHAP: &pdu.CHAP{User: string(p.Secrets[wire.SecretCHAPUser]), Secret: string(p.Secrets[wire.SecretCHAPSecret]),
			TargetUser: string(p.Secrets[wire.SecretCHAPTargetUser]), TargetSecret: string(p.Secrets[wire.SecretCHAPTargetSecret])},
	})
	if err != nil {
		t.Fatalf("login to alice's root: %v", err)
	}
	conn.Close()
	nextEnd(false)
	time.Sleep(3 * grace)
	leaseOf(m1.id, 0)
	if !r.p.Serving(alice) {
		t.Fatal("alice's target withdrawn while desk-1's peer is active")
	}

	// A real initiator logs in and out: desk-1 let go at once.
	url := "iscsi://" + string(p.Secrets[wire.SecretCHAPUser]) + "%" + string(p.Secrets[wire.SecretCHAPSecret]) +
		"@" + p.Root.Params[wire.ISCSIPortal] + "/" + p.Root.Params[wire.ISCSITarget] + "/0?target_user=" +
		string(p.Secrets[wire.SecretCHAPTargetUser]) + "&target_password=" + string(p.Secrets[wire.SecretCHAPTargetSecret])
	capacity := func() error {
		return exec.Command(testenv.LookTool(t, "iscsi-readcapacity16"), "-s", "-i", p.Root.Params[wire.ISCSIInitiator], url).Run()
	}
	if err := capacity(); err != nil {
		t.Fatalf("libiscsi login to alice's root: %v", err)
	}
	loggedOut := nextEnd(true)
	leaseOf("", grace) // decided at once, well within the grace
	if r.p.Serving(alice) {
		t.Fatal("alice's target still served after desk-1 logged out")
	}
	if err := capacity(); err == nil {
		t.Fatal("desk-1's credentials log in after it let go")
	}
	audited := func(id, reason string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second) // recorded just after the lease is freed
		for time.Now().Before(deadline) {
			for _, a := range e.auditEntries(t) {
				if a.Action == "user-let-go" && a.MachineID == id && a.Reason == "root of user alice: "+reason {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("no user-let-go audit entry for %.12s: %s", id, reason)
	}
	audited(m1.id, "logged out")

	// Alice follows to desk-2; desk-1's stale let-go does not free it.
	if _, err := attestOnce(t, e.loginClient(t, m2, typed("alice", alicePW))); err != nil {
		t.Fatalf("alice on desk-2 after desk-1 let go: %v", err)
	}
	leaseOf(m2.id, 0)
	w.Ended(loggedOut)
	time.Sleep(3 * grace)
	leaseOf(m2.id, 0)
	if !r.p.Serving(alice) {
		t.Fatal("a stale let-go of desk-1 withdrew desk-2's target")
	}

	// desk-2 never logs in to the target and its peer is silent (it
	// powered off; the server restarted meanwhile, so no session end is
	// reported but the served roots, and the fresh tunnel device knows no
	// handshake): the lease ends only once the grace has passed since.
	var noHandshake time.Time
	silent.Store(&noHandshake)
	for _, end := range r.p.ServedUserRoots() {
		w.Ended(end)
	}
	time.Sleep(grace / 2)
	leaseOf(m2.id, 0) // a running machine has the grace to log in again
	leaseOf("", 10*grace)
	if r.p.Serving(alice) {
		t.Fatal("alice's target still served after desk-2 let go")
	}
	audited(m2.id, "session lost, no tunnel handshake for 400ms")

	// A machine without a tunnel peer has only its session to go by: it
	// let go once no session came back within the grace.
	if _, err := attestOnce(t, e.loginClient(t, m2, typed("alice", alicePW))); err != nil {
		t.Fatalf("alice on desk-2 again: %v", err)
	}
	noPeer.Store(true)
	for _, end := range r.p.ServedUserRoots() {
		w.Ended(end)
	}
	time.Sleep(grace / 2)
	leaseOf(m2.id, 0)
	leaseOf("", 10*grace)
	audited(m2.id, "session lost for 400ms")
	if strings.Contains(logs.String(), alicePW) {
		t.Error("a password reached the log")
	}
}
