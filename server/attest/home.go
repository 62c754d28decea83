package attest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// Cluster is what a server needs to be one of several sharing a store.
//
// Every machine's root has a home server: the server whose storage keeps
// it, the first to ready it (store.ClusterStore.ClaimHome). Any server
// attests any machine; when the machine's home is another server, the
// release asks the home, through the store, to install the tunnel peer
// and ready the root (HomeRequest, which carries no secret), and seals
// the home's answer: its tunnel endpoint, key and address, its root plan
// and the boot's root secrets, which the home generates and sends
// encrypted to every member server of the secrets keyring (Box). The releasing
// transaction here stays the final guard; the home re-checks the record
// version before it acts.
type Cluster struct {
	Name  string // this server's name in the store's registry
	Store store.ClusterStore
	Box   Box
	// AnswerTimeout bounds the wait for a home's answer; default 10s.
	AnswerTimeout time.Duration
	// CommitWithin bounds how long this server, as a home, keeps the
	// tunnel peer and root it readied for another server's release
	// without seeing that release committed in the store: after it, it
	// withdraws them. Default DefaultCommitWithin.
	CommitWithin time.Duration
}

// Box encrypts to every member server of the secrets keyring, so that
// whichever server asked can read a home's answer, and decrypts with this
// server's own age identity; *keyring.Keyring implements it.
type Box interface {
	Encrypt(ctx context.Context, plaintext []byte) ([]byte, error)
	Decrypt(ciphertext []byte) ([]byte, error)
}

// checkHomeDown refuses a release whose machine's home server is down.
const checkHomeDown = wire.CheckHomeServerDown

// prepare installs the machine's tunnel peer and readies its root for
// the release, here or at its home server.
func (x *exchange) prepare(ctx context.Context) (*wire.TunnelPlan, wire.RootPlan, map[string][]byte, error) {
	if c := x.s.cluster; c != nil && x.homed(ctx) {
		home, err := c.Store.ClaimHome(ctx, x.machineID, c.Name)
		if err != nil {
			return nil, wire.RootPlan{}, nil, fmt.Errorf("home server: %w", err)
		}
		if home != c.Name {
			return x.askHome(ctx, home)
		}
	}
	x.s.readied.drop(x.machineID) // this release replaces what was readied for another server's
	plan, err := x.tunnel(ctx)
	if err != nil {
		return nil, wire.RootPlan{}, nil, err
	}
	root, rootSecrets, err := x.root(ctx, plan)
	if err != nil {
		if plan != nil {
			x.s.dropTunnel(x.machineID)
		}
		return nil, wire.RootPlan{}, nil, err
	}
	return plan, root, rootSecrets, nil
}

// homed reports whether the root x releases is kept on one server (its
// home): every root but a volatile one, which any server readies from its
// own copy of the base.
func (x *exchange) homed(ctx context.Context) bool {
	root, err := store.EffectiveRoot(ctx, x.s.store, x.machine)
	if err != nil {
		return true // askHome reports it
	}
	if x.chosen != nil {
		root = *x.chosen
	}
	return root.Kind != wire.RootVolatile
}

// askHome has the machine's home server ready its boot.
func (x *exchange) askHome(ctx context.Context, home string) (*wire.TunnelPlan, wire.RootPlan, map[string][]byte, error) {
	c := x.s.cluster
	root, err := store.EffectiveRoot(ctx, x.s.store, x.machine)
	if err != nil {
		return nil, wire.RootPlan{}, nil, fail("root", err)
	}
	if x.chosen != nil {
		root = *x.chosen
	}
	if x.s.tunnels != nil && len(x.hello.WireGuardKey) == 0 && x.s.rootTransport(x.machine) != TransportPlain {
		return nil, wire.RootPlan{}, nil, fail("tunnel", ErrNoTunnelKey)
	}
	req := store.HomeRequest{Home: home, From: c.Name, MachineID: x.machineID, Version: x.machine.Version,
		BootCount: x.machine.BootCount, WireGuardKey: x.hello.WireGuardKey, Plan: root, RemoteAddr: x.remote}
	if x.user != "" {
		req.Key = roots.UserRootKey(x.user)
	}
	actx, cancel := context.WithTimeout(ctx, orDefault(c.AnswerTimeout, 10*time.Second))
	defer cancel()
	a, err := c.Store.AskHome(actx, req)
	switch {
	case errors.Is(err, store.ErrHomeDown) && ctx.Err() == nil:
		return nil, wire.RootPlan{}, nil, &Failure{Check: checkHomeDown, Reason: wire.HomeServerDownMessage(home), Err: err}
	case err != nil:
		return nil, wire.RootPlan{}, nil, fmt.Errorf("home server %s: %w", home, err)
	case a.Check != "":
		return nil, wire.RootPlan{}, nil, &Failure{Check: a.Check, Reason: "home server " + home + ": " + a.Error}
	}
	var rootSecrets map[string][]byte
	if len(a.Secrets) > 0 {
		plain, err := c.Box.Decrypt(a.Secrets)
		if err != nil {
			return nil, wire.RootPlan{}, nil, fmt.Errorf("home server %s: decrypt root secrets: %w", home, err)
		}
		err = json.Unmarshal(plain, &rootSecrets)
		clear(plain)
		if err != nil {
			return nil, wire.RootPlan{}, nil, fmt.Errorf("home server %s: root secrets: %w", home, err)
		}
	}
	x.s.logger.Info("boot readied by the machine's home server", "machine", x.machineID, "home", home)
	return a.Tunnel, a.Root, rootSecrets, nil
}

// ServeHome readies, until ctx ends, the boots other servers release of
// machines homed here: for each request it re-checks the machine's
// record, installs the tunnel peer and readies the root as a release
// here would, and withdraws them again unless the release is committed
// within Cluster.CommitWithin (expectRelease). It returns nil when ctx
// ends; without a Cluster, at once.
func (s *Server) ServeHome(ctx context.Context) error {
	if s.cluster == nil {
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return s.cluster.Store.ServeHome(ctx, s.cluster.Name, func(rctx context.Context, req store.HomeRequest) store.HomeAnswer {
		gen := s.readied.mark(req.MachineID)
		a := s.readyForPeer(rctx, req)
		if a.Check != "" {
			s.readied.done(req.MachineID, gen)
			return a
		}
		wg.Go(func() { s.expectRelease(ctx, req, gen) })
		return a
	})
}

func (s *Server) readyForPeer(ctx context.Context, req store.HomeRequest) store.HomeAnswer {
	refuse := func(check string, err error) store.HomeAnswer {
		s.logger.Warn("refused to ready a boot for another server", "machine", req.MachineID, "from", req.From, "check", check, "error", err)
		return store.HomeAnswer{Check: check, Error: err.Error()}
	}
	state, version, err := s.store.MachineVersion(ctx, req.MachineID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(checkForgotten, errors.New("machine forgotten"))
	case err != nil:
		return refuse("home", fmt.Errorf("load machine: %w", err))
	case state == store.StateRevoked:
		return refuse(checkRevoked, errors.New("machine revoked"))
	case state != store.StateApproved || version != req.Version:
		return refuse(checkStale, errors.New("the machine's record changed during attestation: attest again"))
	}
	var a store.HomeAnswer
	if s.tunnels != nil && len(req.WireGuardKey) > 0 {
		if a.Tunnel, err = s.tunnels.Add(ctx, req.MachineID, req.WireGuardKey); err != nil {
			return refuse("tunnel", err)
		}
	}
	a.Root = req.Plan
	if s.roots != nil {
		plan, secrets, err := s.roots.Prepare(ctx, roots.Request{MachineID: req.MachineID, Plan: req.Plan,
			RemoteAddr: req.RemoteAddr, Tunnel: a.Tunnel, Key: req.Key})
		if err != nil {
			if a.Tunnel != nil {
				s.dropTunnel(req.MachineID)
			}
			return refuse("root", err)
		}
		a.Root = plan
		if len(secrets) > 0 {
			buf, err := json.Marshal(secrets)
			clear(secrets)
			if err == nil {
				a.Secrets, err = s.cluster.Box.Encrypt(ctx, buf)
			}
			clear(buf)
			if err != nil {
				s.withdraw(req.MachineID)
				return refuse("home", fmt.Errorf("encrypt root secrets: %w", err))
			}
		}
	}
	s.logger.Info("readied a boot another server released", "machine", req.MachineID, "from", req.From)
	return a
}
