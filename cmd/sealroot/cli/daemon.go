package cli

import (
	"context"
	"os"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/config"
)

// runDaemon runs srv until ctx ends (SIGTERM, SIGINT). It tells systemd
// when srv is ready (a no-op outside systemd) and reloads the
// configuration on each signal on hup.
func runDaemon(ctx context.Context, srv *server.Server, hup <-chan os.Signal,
	load func() (*config.Config, error), logger hclog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		superviseDaemon(ctx, srv, hup, load, logger)
	}()
	err := srv.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

func superviseDaemon(ctx context.Context, srv *server.Server, hup <-chan os.Signal,
	load func() (*config.Config, error), logger hclog.Logger) {
	ready := srv.Ready()
	for {
		select {
		case <-ctx.Done():
			sdNotify(logger, daemon.SdNotifyStopping)
			return
		case <-ready:
			ready = nil
			sdNotify(logger, daemon.SdNotifyReady)
		case <-hup:
			reloadDaemon(srv, load, logger)
			if ready == nil {
				sdNotify(logger, daemon.SdNotifyReady)
			}
		}
	}
}

// reloadDaemon applies the configuration file as it is now, or keeps the
// running one when the file is invalid.
func reloadDaemon(srv *server.Server, load func() (*config.Config, error), logger hclog.Logger) {
	sdNotify(logger, daemon.SdNotifyReloading)
	cfg, err := load()
	if err != nil {
		logger.Error("reload refused: the configuration is invalid; keeping the running one",
			"errors", strings.Split(err.Error(), "\n"))
		return
	}
	applied, restart := srv.Reload(*cfg)
	logger.Info("configuration reloaded", "applied", applied)
	if len(restart) > 0 {
		logger.Warn("these changes need a restart (systemctl restart sealroot); running values kept", "fields", restart)
	}
}

func sdNotify(logger hclog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		logger.Warn("sd_notify", "state", state, "error", err)
	}
}
