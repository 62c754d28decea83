package provision

import (
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/wire"
)

// Config says where Run puts things; the zero value is for tests that
// must not touch the system: set every field for a real boot.
type Config struct {
	// SecretsDir is where secrets go before switch_root: the initramfs's
	// /run/sealroot/secrets (switch_root moves /run into the new root).
	SecretsDir string
	// Tmpfs mounts a tmpfs on SecretsDir (PID 1 only).
	Tmpfs bool
	// SetHostname sets the kernel host name; nil leaves it alone.
	SetHostname func([]byte) error
	Console     io.Writer    // default io.Discard
	Logger      hclog.Logger // default null
}

// Run provisions newRoot from p: secrets, host name, then files. A bad
// host name is reported and skipped; any other failure stops the boot.
func Run(cfg Config, newRoot string, p *wire.Payload) error {
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.SecretsDir != "" {
		names, err := PlaceSecrets(cfg.SecretsDir, p.Secrets, cfg.Tmpfs)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			cfg.Logger.Info("secrets placed", "dir", SecretsDir, "names", names)
		}
	}
	if cfg.SetHostname != nil {
		name, fromMachine, err := Hostname(newRoot, p.MachineName, cfg.SetHostname)
		switch {
		case err != nil:
			fmt.Fprintf(cfg.Console, "sealroot: warning: host name not set: %v\n", err)
		case fromMachine:
			cfg.Logger.Info("host name set", "hostname", name)
		default:
			cfg.Logger.Info("host name left to the image", "hostname", name)
		}
	}
	if err := WriteFiles(newRoot, p.Files); err != nil {
		return err
	}
	if len(p.Files) > 0 {
		cfg.Logger.Info("files written", "count", len(p.Files))
	}
	return nil
}
