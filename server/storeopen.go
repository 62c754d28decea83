package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/bootreport"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/store"
)

// serverStore is what the server needs of its state store beyond
// store.Store; both backends implement it.
type serverStore interface {
	store.Store
	store.UserStore
	store.LeaseStore
	store.DHCPStore
	bootreport.Store
	BootLogs(ctx context.Context, id string) ([]store.BootLog, error)
}

var (
	_ serverStore = (*store.DB)(nil)
	_ serverStore = (*store.Etcd)(nil)
)

// openStore opens the configured state store: state_dir/state.db, or the
// etcd cluster several servers share.
func openStore(ctx context.Context, cfg *config.Config, logger hclog.Logger) (serverStore, error) {
	switch cfg.StoreBackend() {
	case config.StoreEtcd:
		sc := cfg.Store
		prefix := sc.Prefix
		if prefix == "" {
			prefix = config.DefaultStorePrefix
		}
		st, err := store.OpenEtcd(ctx, store.EtcdConfig{Endpoints: sc.Endpoints, CertFile: sc.CertFile, KeyFile: sc.KeyFile,
			CAFile: sc.CAFile, Prefix: prefix}, logger)
		if err != nil {
			return nil, fmt.Errorf("state store: %w", err)
		}
		logger.Info("state store on etcd", "endpoints", len(sc.Endpoints), "prefix", prefix)
		return st, nil
	default:
		return store.Open(filepath.Join(cfg.StateDir, "state.db"), logger)
	}
}
