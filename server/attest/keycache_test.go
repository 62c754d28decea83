package attest

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/sealroot/sealroot/server/attest/evidence"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/wire"
)

// TestKeyCacheHitsOnlyTheSameBytes checks that the cache answers a
// machine's keys only for exactly the public areas they were parsed from:
// another AK of the same machine is parsed afresh and replaces them, and a
// bad public area is refused every time, never kept.
func TestKeyCacheHitsOnlyTheSameBytes(t *testing.T) {
	a := benchAgents(t, 1)[0]
	ek, ak := a.TPM.EKPublic(), a.TPM.AKPublic()
	other, err := a.TPM.WithNewAK()
	if err != nil {
		t.Fatal(err)
	}
	ak2 := other.AKPublic()
	id := MachineIDOf(a)

	c := newKeyCache(10)
	k1, err := c.parse(id, ek, ak)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.parse(id, ek, ak); again != k1 {
		t.Error("the same EK and AK were parsed again: want the cached keys")
	}
	k2, err := c.parse(id, ek, ak2)
	if err != nil {
		t.Fatal(err)
	}
	if k2 == k1 || !k2.Matches(ek, ak2) || k2.Matches(ek, ak) {
		t.Error("a new AK of the same machine got the old AK's keys")
	}
	if again, _ := c.parse(id, ek, ak2); again != k2 || c.len() != 1 {
		t.Errorf("after the AK changed: got a fresh parse or %d entries, want the new keys as the machine's one entry", c.len())
	}

	bad := append([]byte(nil), ak...)
	bad[len(bad)-1] ^= 1 // the point is off the curve
	for range 2 {
		if _, err := c.parse(id, ek, bad); !errors.Is(err, evidence.ErrBadAK) {
			t.Fatalf("bad AK: got %v, want ErrBadAK", err)
		}
	}
	if again, _ := c.parse(id, ek, ak2); again != k2 {
		t.Error("a refused AK displaced the machine's good keys")
	}
}

// TestKeyCacheBounded checks that the cache keeps at most its bound,
// dropping the least recently used machine first.
func TestKeyCacheBounded(t *testing.T) {
	agents := benchAgents(t, 3)
	c := newKeyCache(2)
	parse := func(a *loadgen.Agent) *evidence.Keys {
		t.Helper()
		k, err := c.parse(MachineIDOf(a), a.TPM.EKPublic(), a.TPM.AKPublic())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := parse(agents[0])
	parse(agents[1])
	parse(agents[0]) // agents[1] is now the least recently used
	parse(agents[2])
	if c.len() != 2 {
		t.Fatalf("%d entries, want the bound 2", c.len())
	}
	if c.get(MachineIDOf(agents[1]), agents[1].TPM.EKPublic(), agents[1].TPM.AKPublic()) != nil {
		t.Error("the least recently used machine's keys were kept")
	}
	if parse(agents[0]) != k0 {
		t.Error("a recently used machine's keys were dropped")
	}
}

// TestAttestationUsesTheHellosAK checks that an approved machine whose AK
// changed is verified against the AK its Hello names, not the one the
// server parsed for it before: a quote by the old AK under a Hello with
// the new one is refused, and the new AK's own attestation gets its
// credential.
func TestAttestationUsesTheHellosAK(t *testing.T) {
	ctx := context.Background()
	s, mgr := benchServer(t)
	a, err := loadgen.NewAgent(rand.Reader, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	enroll(t, s, mgr, []*loadgen.Agent{a})
	if m, err := runExchange(t, s, a); err != nil {
		t.Fatalf("first attestation: %v", err)
	} else if _, ok := m.(*wire.Credential); !ok {
		t.Fatalf("first attestation: got %#v, want a credential", m)
	}
	tpm2, err := a.TPM.WithNewAK()
	if err != nil {
		t.Fatal(err)
	}
	b := &loadgen.Agent{TPM: tpm2, Boot: a.Boot}

	// Hello and activation by the new AK, the quote by the old one.
	st := startExchange(t, s, b)
	ev := answer(t, st, b)
	ev.Quote, ev.Signature, err = a.Quote(ctx, wire.QualifyingData(st.x.nonce, st.x.exporter, st.x.machineID), st.x.pcrs)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.x.finish(ctx, ev)
	var f *Failure
	if !errors.As(err, &f) || f.Check != "quote-signature" || !errors.Is(err, evidence.ErrSignature) {
		t.Fatalf("quote by the old AK under a Hello with the new one: got %v, want a quote-signature failure", err)
	}

	m, err := runExchange(t, s, b)
	if _, ok := m.(*wire.Credential); !ok {
		t.Fatalf("attestation with the new AK: got %#v (%v), want a credential", m, err)
	}
	if s.keys.len() != 1 {
		t.Errorf("%d cached machines, want 1", s.keys.len())
	}
}
