package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/server"
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
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(c, &a, e)
			if err != nil {
				return err
			}
			logger := hclog.New(&hclog.LoggerOptions{
				Name:       "sealroot",
				Level:      hclog.LevelFromString(a.logLevel),
				Output:     e.Stderr,
				JSONFormat: a.logJSON,
			})
			srv, err := server.New(c.Context(), *cfg, logger)
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(c.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&a.config, "config", "", "JSON configuration `file` (fields of server.Config)")
	f.StringVar(&a.stateDir, "state-dir", "", "state `directory` (default /var/lib/sealroot)")
	f.StringVar(&a.attestAddr, "attest-addr", "", "UDP `address` of the QUIC attestation service (default :4433)")
	f.StringArrayVar(&a.ekCA, "ek-ca", nil, "TPM vendor CA `file or directory` for EK certificates (repeatable)")
	f.BoolVar(&a.requireEKCert, "require-ek-cert", false, "refuse TPMs without an EK certificate")
	f.StringVar(&a.metricsAddr, "metrics-addr", "", "TCP `address` for Prometheus /metrics, /healthz and /readyz (default: none)")
	f.StringVar(&a.logLevel, "log-level", "info", "log `level`: trace, debug, info, warn, error")
	f.BoolVar(&a.logJSON, "log-json", false, "log as JSON lines")
	return c
}

// loadServeConfig reads the config file, strictly, then applies set flags.
func loadServeConfig(c *cobra.Command, a *serveArgs, e *env) (*server.Config, error) {
	var cfg server.Config
	if a.config != "" {
		b, err := os.ReadFile(a.config)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("config %s: %w", a.config, err)
		}
	}
	f := c.Flags()
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
	return &cfg, nil
}
