// Package bootreport receives agents' boot reports (wire.BootReport): the
// agent's step timings, the step that failed after attestation and its
// boot log. The Receiver listens on the server's tunnel address only, and
// the machine is the tunnel peer the connection came through
// (tunnel.Tunnel.PeerAddr): WireGuard binds a peer's source address to
// its key, so an agent can report only for itself.
//
// A report is bookkeeping and decides nothing: its timings go on the
// machine's newest allowed boot attempt (seen fields, Version unchanged),
// its log into the machine's boot logs (store.BootLog), after every
// secret value of the machine is removed from it.
//
// # Protocol
//
// One report per TCP connection: the agent writes the JSON report and
// closes its side; the server answers "ok\n" once it stored it, or
// "error\n". Connections from addresses that are not an installed peer,
// oversized or malformed reports are counted, never logged one by one.
package bootreport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// readTimeout bounds one connection: a report is small and sent at once.
const readTimeout = 10 * time.Second

// maxConns bounds the connections served at once.
const maxConns = 32

// Redacted replaces a secret value found in a report.
const Redacted = "[redacted]"

// Peers maps a tunnel source address to the machine of its peer.
type Peers interface {
	PeerAddr(remote net.Addr) (machineID string, ok bool)
}

// Store is where reports go (*store.DB).
type Store interface {
	UpdateMachine(ctx context.Context, id string, fn func(*store.Machine) error) (*store.Machine, error)
	PutBootLog(ctx context.Context, id string, l store.BootLog) error
}

// Secrets returns a machine's secret values, to scrub them from its
// report (machines.Manager.RedactionValues).
type Secrets interface {
	RedactionValues(ctx context.Context, machineID string) (map[string][]byte, error)
}

// Config configures a Receiver. Peers, Store and Secrets are required.
type Config struct {
	Peers   Peers
	Store   Store
	Secrets Secrets
	// Observe, if set, is called with each stored report (metrics).
	Observe func(r *wire.BootReport)
	Logger  hclog.Logger
	Now     func() time.Time // default time.Now
}

// Receiver stores boot reports. It is safe for concurrent use.
type Receiver struct {
	cfg Config
	log hclog.Logger

	mu     sync.Mutex        // guards counts
	counts map[string]uint64 // connections by result: stored, bad, stranger, error
}

// New returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Peers == nil || cfg.Store == nil || cfg.Secrets == nil {
		return nil, errors.New("bootreport: Peers, Store and Secrets are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Receiver{cfg: cfg, log: cfg.Logger.Named("bootreport"), counts: make(map[string]uint64)}, nil
}

// Serve accepts reports on ln until ctx ends, then closes ln and waits
// for the connections in progress.
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, maxConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bootreport: accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			r.count("busy")
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			defer c.Close()
			r.serveConn(ctx, c)
		})
	}
}

// serveConn reads one report from c, stores it and answers.
func (r *Receiver) serveConn(ctx context.Context, c net.Conn) {
	id, ok := r.cfg.Peers.PeerAddr(c.RemoteAddr())
	if !ok {
		r.count("stranger")
		return
	}
	c.SetDeadline(r.cfg.Now().Add(readTimeout))
	body, err := io.ReadAll(io.LimitReader(c, wire.MaxReportSize+1))
	if err != nil {
		r.count("bad")
		return
	}
	rep, err := wire.DecodeBootReport(body)
	if err != nil {
		r.count("bad")
		io.WriteString(c, "error\n")
		return
	}
	if err := r.Record(ctx, id, c.RemoteAddr().String(), rep); err != nil {
		r.count("error")
		r.log.Warn("boot report not stored", "machine", id, "error", err)
		io.WriteString(c, "error\n")
		return
	}
	io.WriteString(c, "ok\n")
}

// Record stores rep as machine id's report of its current boot: the
// timings on its newest allowed attempt, the log (secret values removed)
// in its boot logs.
func (r *Receiver) Record(ctx context.Context, id, remote string, rep *wire.BootReport) error {
	secrets, err := r.cfg.Secrets.RedactionValues(ctx, id)
	if err != nil {
		return fmt.Errorf("secrets to scrub: %w", err)
	}
	rep.Log = Scrub(rep.Log, secrets)
	rep.Error = Scrub(rep.Error, secrets)
	_, err = r.cfg.Store.UpdateMachine(ctx, id, func(m *store.Machine) error {
		for i := len(m.History) - 1; i >= 0; i-- {
			if a := &m.History[i]; a.Outcome == "allowed" {
				a.Stages, a.Failed, a.Error = rep.Stages, rep.Failed, rep.Error
				return nil
			}
		}
		return nil // no allowed attempt recorded (history not written yet): the log still goes in
	})
	if err != nil {
		return err
	}
	err = r.cfg.Store.PutBootLog(ctx, id, store.BootLog{
		Time: r.cfg.Now().UTC(), Remote: remote, Failed: rep.Failed, Error: rep.Error, Log: rep.Log,
	})
	if err != nil {
		return err
	}
	r.count("stored")
	if r.cfg.Observe != nil {
		r.cfg.Observe(rep)
	}
	return nil
}

// Scrub returns s with every value of secrets replaced by Redacted.
func Scrub(s string, secrets map[string][]byte) string {
	b := []byte(s)
	for _, v := range secrets {
		if len(v) > 0 {
			b = bytes.ReplaceAll(b, v, []byte(Redacted))
		}
	}
	return string(b)
}

func (r *Receiver) count(result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[result]++
}

// Counts returns the connections handled since start by result: stored,
// bad (malformed or oversized), stranger (not from an installed peer),
// busy (too many at once), error (not stored).
func (r *Receiver) Counts() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}
