package cli

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/config"
)

// serveArgs are the flags of `sealroot serve`; set flags override the
// config file.
type serveArgs struct {
	config        string
	stateDir      string
	attestAddr    string
	ekCA          []string
	requireEKCert bool
	logLevel      string
	logJSON       bool
	metricsAddr   string
}

func newServeCmd(e *env) *cobra.Command {
	var a serveArgs
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the sealroot daemon (attestation, admin API, boot services)",
		Args:  cmdline.ExactArgs(0),
		Long: `Run the sealroot daemon. The configuration file is checked whole before
anything starts (see "sealroot config check"). SIGTERM and SIGINT stop it
cleanly: services drained, nfs-ganesha stopped, tunnel down, admin socket
removed. SIGHUP rereads the file and applies the log level and the boot
settings (artifacts, kernel, initrd, UKI, command line); it logs the changes
that need a restart. Under systemd (Type=notify) readiness is sent once every
listener is up.`,
		RunE: func(c *cobra.Command, _ []string) error {
			// SIGHUP must not kill the daemon while it starts.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg, err := loadServeConfig(c, &a, e)
			if err != nil {
				return configErrors(e, err)
			}
			logger := hclog.New(&hclog.LoggerOptions{
				Name:       "sealroot",
				Level:      cfg.HCLogLevel(),
				Output:     e.Stderr,
				JSONFormat: a.logJSON,
			})
			srv, err := server.New(c.Context(), *cfg, logger)
			if err != nil {
				return err
			}
			reload := func() (*config.Config, error) { return loadServeConfig(c, &a, e) }
			err = runDaemon(c.Context(), srv, hup, reload, logger)
			if cerr := srv.Close(); cerr != nil {
				logger.Error("stop", "error", cerr)
			}
			logger.Info("sealroot stopped")
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&a.config, "config", "", "JSON configuration `file` (fields of config.Config)")
	f.StringVar(&a.stateDir, "state-dir", "", "state `directory` (default /var/lib/sealroot)")
	f.StringVar(&a.attestAddr, "attest-addr", "", "UDP `address` of the QUIC attestation service (default :4433)")
	f.StringArrayVar(&a.ekCA, "ek-ca", nil, "TPM vendor CA `file or directory` for EK certificates (repeatable)")
	f.BoolVar(&a.requireEKCert, "require-ek-cert", false, "refuse TPMs without an EK certificate")
	f.StringVar(&a.metricsAddr, "metrics-addr", "", "TCP `address` for Prometheus /metrics, /healthz and /readyz (default: none)")
	f.StringVar(&a.logLevel, "log-level", "", "log `level`: trace, debug, info, warn, error (default: the config's log_level, else info)")
	f.BoolVar(&a.logJSON, "log-json", false, "log as JSON lines")
	return c
}

// loadServeConfig reads and checks the whole config file (every mistake
// at once), then applies set flags and checks the result again.
func loadServeConfig(c *cobra.Command, a *serveArgs, e *env) (*config.Config, error) {
	cfg := &config.Config{}
	if a.config != "" {
		var err error
		if cfg, err = config.LoadConfig(a.config); err != nil {
			return nil, err
		}
	}
	f := c.Flags()
	if f.Changed("log-level") {
		cfg.LogLevel = a.logLevel
	}
	if f.Changed("state-dir") {
		cfg.StateDir = a.stateDir
	}
	if f.Changed("attest-addr") {
		cfg.AttestAddr = a.attestAddr
	}
	if f.Changed("ek-ca") {
		cfg.EKCABundle = a.ekCA
	}
	if f.Changed("metrics-addr") {
		cfg.MetricsAddr = a.metricsAddr
	}
	if f.Changed("require-ek-cert") {
		cfg.RequireEKCert = a.requireEKCert
	}
	if e.Socket != DefaultSocket || cfg.AdminSocket == "" {
		cfg.AdminSocket = e.Socket
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration with flags:\n%w", err)
	}
	return cfg, nil
}
