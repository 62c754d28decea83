package roots_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/wire"
)

// fakeProvider records the calls it gets; with fail set, every call that
// can fail fails with it.
type fakeProvider struct {
	name  string
	fail  error
	held  map[string]bool
	bases map[string]bool
	calls []string
}

func newFake(name string, held ...string) *fakeProvider {
	p := &fakeProvider{name: name, held: map[string]bool{}, bases: map[string]bool{"base-" + name: true}}
	for _, id := range held {
		p.held[id] = true
	}
	return p
}

func (p *fakeProvider) call(format string, args ...any) error {
	p.calls = append(p.calls, fmt.Sprintf(format, args...))
	return p.fail
}

func (p *fakeProvider) Prepare(_ context.Context, req roots.Request) (wire.RootPlan, map[string][]byte, error) {
	if err := p.call("prepare %s %s", req.MachineID, roots.KindOf(req.Plan)); err != nil {
		return wire.RootPlan{}, nil, err
	}
	plan := wire.RootPlan{Kind: req.Plan.Kind, Params: map[string]string{"by": p.name}}
	return plan, map[string][]byte{"secret": []byte(p.name)}, nil
}

func (p *fakeProvider) Release(_ context.Context, id string) error { return p.call("release %s", id) }
func (p *fakeProvider) Has(id string) bool                         { return p.held[id] }
func (p *fakeProvider) Reset(_ context.Context, id string, _ wire.RootPlan) error {
	return p.call("reset %s", id)
}
func (p *fakeProvider) Snapshot(_ context.Context, id, name string) error {
	return p.call("snapshot %s %s", id, name)
}
func (p *fakeProvider) Rollback(_ context.Context, id, name string) error {
	return p.call("rollback %s %s", id, name)
}
func (p *fakeProvider) Delete(_ context.Context, id string) error { return p.call("delete %s", id) }
func (p *fakeProvider) Bases() (map[string]bool, error) {
	if err := p.call("bases"); err != nil {
		return nil, err
	}
	return p.bases, nil
}

type fakePeers struct{ removed []string }

func (f *fakePeers) Remove(id string) error { f.removed = append(f.removed, id); return nil }

var errBroken = errors.New("provider broken")

func plan(kind string, params ...string) wire.RootPlan {
	p := wire.RootPlan{Kind: kind, Params: map[string]string{}}
	for i := 0; i+1 < len(params); i += 2 {
		p.Params[params[i]] = params[i+1]
	}
	return p
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		plan wire.RootPlan
		want string
	}{
		{"none", plan(wire.RootNone), wire.RootNone},
		{"iscsi", plan(wire.RootISCSI), roots.KindISCSI},
		{"nfs", plan(wire.RootNFS), roots.KindNFS},
		{"volatile_default_nfs", plan(wire.RootVolatile), roots.KindVolatileNFS},
		{"volatile_via_nfs", plan(wire.RootVolatile, wire.VolatileVia, wire.ViaNFS), roots.KindVolatileNFS},
		{"volatile_via_iscsi", plan(wire.RootVolatile, wire.VolatileVia, wire.ViaISCSI), roots.KindVolatileISCSI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := roots.KindOf(tt.plan); got != tt.want {
				t.Fatalf("KindOf(%+v) = %q, want %q", tt.plan, got, tt.want)
			}
		})
	}
}

// newService registers a for iSCSI kinds and b for NFS kinds.
func newService(a, b *fakeProvider, peers roots.Peers) *roots.Service {
	return roots.New(roots.Config{Providers: map[string]roots.Provider{
		roots.KindISCSI: a, roots.KindVolatileISCSI: a,
		roots.KindNFS: b, roots.KindVolatileNFS: b,
	}, Tunnel: peers})
}

func TestPrepareRoutesByKind(t *testing.T) {
	tests := []struct {
		name         string
		plan         wire.RootPlan
		wantBy       string // "" = passed through
		wantA, wantB []string
	}{
		{"iscsi", plan(wire.RootISCSI), "a", []string{"prepare m iscsi"}, []string{"release m"}},
		{"volatile_via_iscsi", plan(wire.RootVolatile, wire.VolatileVia, wire.ViaISCSI), "a",
			[]string{"prepare m volatile/iscsi"}, []string{"release m"}},
		{"nfs", plan(wire.RootNFS), "b", []string{"release m"}, []string{"prepare m nfs"}},
		{"volatile", plan(wire.RootVolatile), "b", []string{"release m"}, []string{"prepare m volatile/nfs"}},
		{"none_withdraws_both", plan(wire.RootNone), "", []string{"release m"}, []string{"release m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake("a"), newFake("b")
			got, secrets, err := newService(a, b, nil).Prepare(context.Background(), roots.Request{MachineID: "m", Plan: tt.plan})
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if got.Params["by"] != tt.wantBy || string(secrets["secret"]) != tt.wantBy {
				t.Errorf("Prepare = %+v, %q; want prepared by %q", got, secrets, tt.wantBy)
			}
			if tt.wantBy == "" && (got.Kind != tt.plan.Kind || secrets != nil) {
				t.Errorf("Prepare = %+v, %v; want the plan passed through, no secrets", got, secrets)
			}
			if !slices.Equal(a.calls, tt.wantA) || !slices.Equal(b.calls, tt.wantB) {
				t.Errorf("calls a %q, b %q; want %q, %q", a.calls, b.calls, tt.wantA, tt.wantB)
			}
		})
	}
}

func TestFailingProvider(t *testing.T) {
	ctx := context.Background()
	t.Run("prepare_fails_when_the_other_cannot_withdraw", func(t *testing.T) {
		a, b := newFake("a"), newFake("b")
		b.fail = errBroken
		if _, _, err := newService(a, b, nil).Prepare(ctx, roots.Request{MachineID: "m", Plan: plan(wire.RootISCSI)}); !errors.Is(err, errBroken) {
			t.Fatalf("Prepare = %v, want %v", err, errBroken)
		}
		if len(a.calls) != 0 {
			t.Errorf("a prepared %q although b kept its root", a.calls)
		}
	})
	t.Run("prepare_error_returned", func(t *testing.T) {
		a, b := newFake("a"), newFake("b")
		a.fail = errBroken
		if _, secrets, err := newService(a, b, nil).Prepare(ctx, roots.Request{MachineID: "m", Plan: plan(wire.RootISCSI)}); !errors.Is(err, errBroken) || secrets != nil {
			t.Fatalf("Prepare = %v, %v; want %v and no secrets", secrets, err, errBroken)
		}
	})
	t.Run("release_and_withdraw_reach_every_provider", func(t *testing.T) {
		a, b := newFake("a"), newFake("b")
		a.fail = errBroken
		peers := &fakePeers{}
		s := newService(a, b, peers)
		if err := s.Withdraw(ctx, "m"); !errors.Is(err, errBroken) {
			t.Fatalf("Withdraw = %v, want %v", err, errBroken)
		}
		if !slices.Equal(b.calls, []string{"release m"}) || !slices.Equal(peers.removed, []string{"m"}) {
			t.Errorf("after a failed: b %q, peers removed %q; want b released and the peer removed", b.calls, peers.removed)
		}
	})
	t.Run("bases_fail", func(t *testing.T) {
		a, b := newFake("a"), newFake("b")
		b.fail = errBroken
		if _, err := newService(a, b, nil).Bases(); !errors.Is(err, errBroken) {
			t.Fatalf("Bases = %v, want %v", err, errBroken)
		}
	})
}

func TestLifecycleGoesToTheHolder(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name         string
		plan         wire.RootPlan
		heldA, heldB bool
		wantA, wantB []string
		wantErr      error
	}{
		{"kind_decides", plan(wire.RootNFS), true, true, nil, []string{"reset m", "snapshot m s", "rollback m s"}, nil},
		{"none_goes_to_the_holder", plan(wire.RootNone), false, true, nil, []string{"reset m", "snapshot m s", "rollback m s"}, nil},
		{"none_without_a_root", plan(wire.RootNone), false, false, nil, nil, roots.ErrNoRoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake("a"), newFake("b")
			a.held["m"], b.held["m"] = tt.heldA, tt.heldB
			s := newService(a, b, nil)
			for _, err := range []error{
				s.Reset(ctx, "m", tt.plan), s.Snapshot(ctx, "m", tt.plan, "s"), s.Rollback(ctx, "m", tt.plan, "s"),
			} {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			}
			if !slices.Equal(a.calls, tt.wantA) || !slices.Equal(b.calls, tt.wantB) {
				t.Errorf("calls a %q, b %q; want %q, %q", a.calls, b.calls, tt.wantA, tt.wantB)
			}
		})
	}
}

func TestDeleteAndBases(t *testing.T) {
	ctx := context.Background()
	a, b := newFake("a", "m"), newFake("b", "m", "n")
	s := newService(a, b, nil)
	if err := s.Delete(ctx, "m"); err != nil {
		t.Fatalf("Delete(m) = %v", err)
	}
	if !slices.Equal(a.calls, []string{"delete m"}) || !slices.Equal(b.calls, []string{"delete m"}) {
		t.Errorf("Delete(m) calls a %q, b %q; want both deleted", a.calls, b.calls)
	}
	if err := s.Delete(ctx, "x"); !errors.Is(err, roots.ErrNoRoot) {
		t.Errorf("Delete(x) = %v, want ErrNoRoot", err)
	}
	bases, err := s.Bases()
	if err != nil || !bases["base-a"] || !bases["base-b"] || len(bases) != 2 {
		t.Errorf("Bases = %v, %v; want both providers' bases", bases, err)
	}
	if !roots.New(roots.Config{}).Empty() || s.Empty() {
		t.Error("Empty wrong")
	}
}

// TestHasRoot: the user-root lifecycle asks which provider holds a key
// (server/machines userRootPlan).
func TestHasRoot(t *testing.T) {
	a, b := newFake("a", "iscsi-user"), newFake("b", "nfs-user")
	s := newService(a, b, nil)
	for _, tt := range []struct {
		kind, key string
		want      bool
	}{
		{roots.KindNFS, "nfs-user", true},
		{roots.KindNFS, "iscsi-user", false},
		{roots.KindISCSI, "iscsi-user", true},
		{"floppy", "nfs-user", false},
	} {
		if got := s.HasRoot(tt.kind, tt.key); got != tt.want {
			t.Errorf("HasRoot(%s, %s) = %v, want %v", tt.kind, tt.key, got, tt.want)
		}
	}
	var none *roots.Service
	if none.HasRoot(roots.KindNFS, "nfs-user") {
		t.Error("HasRoot of no service = true")
	}
}
