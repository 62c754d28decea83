package rootiscsi_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	agentiscsi "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

// holdSession logs in to the machine's target as the agent does and
// keeps the session open until the returned func is called.
func holdSession(t *testing.T, addr string, plan wire.RootPlan, s map[string][]byte) func() {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = agentiscsi.Login(context.Background(), conn, agentiscsi.Config{
		InitiatorName: plan.Params[wire.ISCSIInitiator], TargetName: plan.Params[wire.ISCSITarget],
		ISID: [6]byte{0x80, 0, 0, 0, 0, 1},
		CHAP: &pdu.CHAP{User: string(s[wire.SecretCHAPUser]), Secret: string(s[wire.SecretCHAPSecret]),
			TargetUser: string(s[wire.SecretCHAPTargetUser]), TargetSecret: string(s[wire.SecretCHAPTargetSecret])},
	})
	if err != nil {
		conn.Close()
		t.Fatalf("login: %v", err)
	}
	return func() { conn.Close() }
}

func TestReleaseIdleRefusesWhileLoggedIn(t *testing.T) {
	e := newEnv(t)
	m := iscsiMachine(idA, "tiny")
	plan, sec := e.prepare(t, m)
	end := holdSession(t, e.addr, plan, sec)
	if err := e.p.ReleaseIdle(context.Background(), idA); !errors.Is(err, roots.ErrInUse) {
		t.Fatalf("ReleaseIdle with a session: %v, want ErrInUse", err)
	}
	if !e.p.Serving(idA) {
		t.Fatal("refused ReleaseIdle withdrew the target")
	}
	end()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := e.p.ReleaseIdle(context.Background(), idA)
		if err == nil {
			break
		}
		if !errors.Is(err, roots.ErrInUse) || time.Now().After(deadline) {
			t.Fatalf("ReleaseIdle after logout: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.p.Serving(idA) {
		t.Error("target still served after ReleaseIdle")
	}
	if _, err := loginFrom(e.addr, plan, sec).capacity(t); err == nil {
		t.Error("login after ReleaseIdle admitted")
	}
	// The volume is closed: it can be opened for maintenance.
	v, err := e.vols.Open(idA, e.images["tiny"].Digest)
	if err != nil {
		t.Fatalf("volume after ReleaseIdle: %v", err)
	}
	v.Close()
}
