package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
)

// openKeyring returns the secrets keyring of this server (box) on st,
// making it of this server alone when the store has none. Every store
// implements keyring.Store; nil is returned for one that does not.
func openKeyring(ctx context.Context, st store.Store, box *secrets.Box, logger hclog.Logger) (*keyring.Keyring, error) {
	ks, ok := st.(keyring.Store)
	if !ok {
		return nil, nil
	}
	k := keyring.New(ks, box, logger)
	kr, err := k.Init(ctx)
	if err != nil {
		return nil, fmt.Errorf("secrets keyring: %w", err)
	}
	logger.Info("secrets keyring", "recipient", k.Recipient(), "members", len(kr.Recipients), "version", kr.Version)
	return k, nil
}

// OpenKeyring opens cfg's state store and this server's secrets identity
// (state_dir/secrets.age.key, made when missing) for the `sealroot
// cluster` commands, which run beside the serving sealroot: on etcd every
// change is a transaction of its own; a bbolt store is locked by a running
// server (store.ErrLocked). close closes the store.
func OpenKeyring(ctx context.Context, cfg *config.Config, logger hclog.Logger) (k *keyring.Keyring, close func() error, err error) {
	box, err := secrets.LoadOrCreate(filepath.Join(cfg.StateDir, "secrets.age.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("secrets identity: %w", err)
	}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	ks, ok := st.(keyring.Store)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("state store %T keeps no keyring", st)
	}
	return keyring.New(ks, box, logger), st.Close, nil
}

// Cluster operations, for ClusterChange.
const (
	ClusterJoin   = "join"
	ClusterLeave  = "leave"
	ClusterRewrap = "rewrap"
)

// ClusterChange runs `sealroot cluster join|leave|rewrap` (op; recipient
// for join and leave) while this server does not run: on cfg's store with
// this server's identity, recorded first in this server's audit log
// (state_dir/audit.log) as done by actor, with the same records the
// running server's admin API (machines.Manager.ClusterJoin, ...) writes.
// The CLI calls it only when nothing answers on the admin socket: the
// audit log has one writer at a time.
func ClusterChange(ctx context.Context, cfg *config.Config, logger hclog.Logger, actor, op, recipient string) (*api.ClusterResult, error) {
	box, err := secrets.LoadOrCreate(filepath.Join(cfg.StateDir, "secrets.age.key"))
	if err != nil {
		return nil, fmt.Errorf("secrets identity: %w", err)
	}
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ks, ok := st.(keyring.Store)
	if !ok {
		return nil, fmt.Errorf("state store %T keeps no keyring", st)
	}
	log, err := audit.OpenRotating(filepath.Join(cfg.StateDir, "audit.log"), cfg.Audit.Rotation())
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer log.Close()
	m := machines.New(machines.Config{Store: st, Keyring: keyring.New(ks, box, logger), Audit: log, Logger: logger})
	ctx = machines.WithActor(ctx, actor)
	switch op {
	case ClusterJoin:
		return m.ClusterJoin(ctx, recipient)
	case ClusterLeave:
		return m.ClusterLeave(ctx, recipient)
	case ClusterRewrap:
		return m.ClusterRewrap(ctx)
	}
	return nil, fmt.Errorf("cluster %q: %w", op, api.ErrInvalid)
}
