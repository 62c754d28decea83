package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/keyring"
	"github.com/sealroot/sealroot/server/secrets"
)

// clusterArgs locate this server's configuration (its store) and state
// directory (its secrets identity).
type clusterArgs struct {
	config, stateDir string
}

func (a *clusterArgs) flags(c *cobra.Command) {
	c.Flags().StringVar(&a.config, "config", "", "this server's configuration `file` (its store section)")
	c.Flags().StringVar(&a.stateDir, "state-dir", "", "state `directory` (default: the config's state_dir, else /var/lib/sealroot)")
}

func (a *clusterArgs) load() (*config.Config, error) {
	cfg := &config.Config{}
	if a.config != "" {
		var err error
		if cfg, err = config.LoadConfig(a.config); err != nil {
			return nil, err
		}
	}
	if a.stateDir != "" {
		cfg.StateDir = a.stateDir
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	return cfg, nil
}

// withKeyring runs fn on this server's keyring.
func (a *clusterArgs) withKeyring(ctx context.Context, e *env, fn func(*keyring.Keyring) error) error {
	cfg, err := a.load()
	if err != nil {
		return err
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Output: e.Stderr, Level: hclog.Warn})
	k, closeStore, err := server.OpenKeyring(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	return fn(k)
}

func newClusterCmd(e *env) *cobra.Command {
	return cmdline.Group("cluster", "Manage the servers that can decrypt machine secrets",
		newClusterRecipientCmd(e), newClusterMembersCmd(e), newClusterJoinCmd(e), newClusterLeaveCmd(e), newClusterRewrapCmd(e))
}

func newClusterRecipientCmd(e *env) *cobra.Command {
	var a clusterArgs
	c := &cobra.Command{
		Use:   "recipient",
		Short: "Print this server's age recipient, to join it on a member",
		Long: `Print this server's age recipient (age1..., the public key of
<state-dir>/secrets.age.key, made when missing). Give it to "sealroot
cluster join" on a server that is already a member. The identity itself
never leaves this server.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := a.load()
			if err != nil {
				return err
			}
			box, err := secrets.LoadOrCreate(filepath.Join(cfg.StateDir, "secrets.age.key"))
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(struct {
					Recipient string `json:"recipient"`
				}{box.Recipient()})
			}
			_, err = fmt.Fprintln(e.Stdout, box.Recipient())
			return err
		},
	}
	a.flags(c)
	return c
}

func newClusterMembersCmd(e *env) *cobra.Command {
	var a clusterArgs
	c := &cobra.Command{
		Use:   "members",
		Short: "List the recipients every secret is encrypted to",
		Args:  cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withKeyring(c.Context(), e, func(k *keyring.Keyring) error {
				kr, err := k.Init(c.Context())
				if err != nil {
					return err
				}
				if e.JSON {
					return e.printJSON(struct {
						Version    uint64   `json:"version"`
						Recipients []string `json:"recipients"`
						Self       string   `json:"self"`
					}{kr.Version, kr.Recipients, k.Recipient()})
				}
				for _, r := range kr.Recipients {
					mark := ""
					if r == k.Recipient() {
						mark = " (this server)"
					}
					if _, err := fmt.Fprintf(e.Stdout, "%s%s\n", r, mark); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	a.flags(c)
	return c
}

func printResult(e *env, op string, res *api.ClusterResult) error {
	if e.JSON {
		return e.printJSON(res)
	}
	_, err := fmt.Fprintf(e.Stdout, "%s: %d members, %d secrets re-wrapped (%d redone after concurrent changes)\n",
		op, len(res.Recipients), res.Rewrapped, res.Redone)
	return err
}

// change runs a keyring change (op, recipient) on the running server,
// through the admin API, which audits it; when nothing answers on the
// socket (the server is stopped), here on the configured store, audited
// in the state directory's audit log as the running server would.
func (a *clusterArgs) change(ctx context.Context, e *env, op, recipient string) (*api.ClusterResult, error) {
	c := e.client()
	var (
		res *api.ClusterResult
		err error
	)
	switch op {
	case server.ClusterJoin:
		res, err = c.ClusterJoin(ctx, recipient)
	case server.ClusterLeave:
		res, err = c.ClusterLeave(ctx, recipient)
	default:
		res, err = c.ClusterRewrap(ctx)
	}
	var unreachable *client.UnreachableError
	if !errors.As(err, &unreachable) {
		return res, err
	}
	cfg, err := a.load()
	if err != nil {
		return nil, err
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Output: e.Stderr, Level: hclog.Warn})
	return server.ClusterChange(ctx, cfg, logger, fmt.Sprintf("operator:%d", os.Getuid()), op, recipient)
}

func newClusterJoinCmd(e *env) *cobra.Command {
	var a clusterArgs
	c := &cobra.Command{
		Use:   "join RECIPIENT",
		Short: "Let a new server decrypt secrets: add its recipient and re-wrap every secret",
		Long: `Run on a server that is a member (it decrypts the secrets to re-wrap
them), with the new server's recipient from "sealroot cluster recipient"
there. The recipient joins the keyring in the shared store, then every
secret is re-encrypted to all members, one store transaction each. Secrets
set meanwhile on any server are kept. Joining a member again re-wraps only
(finishing an interrupted join).

Join, leave and rewrap run on the server answering on --socket when it runs,
which records them in its audit log first; with no server answering they
run here on --config's store and write the same audit record to that
server's state directory.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			res, err := a.change(c.Context(), e, server.ClusterJoin, args[0])
			if err != nil {
				return err
			}
			return printResult(e, "joined", res)
		},
	}
	a.flags(c)
	return c
}

func newClusterLeaveCmd(e *env) *cobra.Command {
	var (
		a   clusterArgs
		yes bool
	)
	c := &cobra.Command{
		Use:     "leave RECIPIENT",
		Aliases: []string{"rm"},
		Short:   "Remove a server's recipient and re-wrap every secret without it",
		Long: `Run on another member. The recipient leaves the keyring, then every
secret is re-encrypted to the remaining members: the removed server's
identity decrypts none of them, nor any secret set afterwards. Copies of
the state made before (backups, etcd snapshots) still hold ciphertexts it
decrypts: if its identity may be stolen, change the secrets' values too.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			r, err := secrets.ParseRecipient(args[0])
			if err != nil {
				return err
			}
			if err := confirm(c, e, yes, "remove "+r+" from the secrets keyring"); err != nil {
				return err
			}
			res, err := a.change(c.Context(), e, server.ClusterLeave, r)
			if err != nil {
				return err
			}
			return printResult(e, "left", res)
		},
	}
	a.flags(c)
	return addYes(c, &yes)
}

func newClusterRewrapCmd(e *env) *cobra.Command {
	var a clusterArgs
	c := &cobra.Command{
		Use:   "rewrap",
		Short: "Re-encrypt every secret to the current members (after an interrupted join or leave)",
		Args:  cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			res, err := a.change(c.Context(), e, server.ClusterRewrap, "")
			if err != nil {
				return err
			}
			return printResult(e, "rewrapped", res)
		},
	}
	a.flags(c)
	return c
}
