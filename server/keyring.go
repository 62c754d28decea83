package server

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/keyring"
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
