package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/secureboot"
)

type secureBootUpdateArgs struct {
	stateDir string
	key      string
	cert     string
	variable string
	esl      string
	append   bool
}

// newSecureBootUpdateCmd is `sealroot secureboot update`: a signed
// (authenticated) update of db, as efitools' sign-efi-sig-list.
func newSecureBootUpdateCmd(e *env) *cobra.Command {
	var args secureBootUpdateArgs
	cmd := &cobra.Command{
		Use:   "update OUT",
		Short: "Write a signed update that adds the owner certificate to db (db.auth)",
		Long: `Write OUT, an authenticated variable update (EFI_VARIABLE_AUTHENTICATION_2)
of --var (default db) with the owner certificate's signature list, signed with
--key and --cert: a key enrolled in KEK (for db) or PK (for KEK). Firmware
accepts it outside Setup Mode, from its setup menu ("append from file") or
with efi-updatevar -f OUT db. Byte for byte what efitools' sign-efi-sig-list
writes. --append (the default) adds to db; --append=false replaces it.`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, a []string) error { return runSecureBootUpdate(e, args, a[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&args.stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	f.StringVar(&args.key, "key", "", "signing key `file` (PEM; in KEK for db)")
	f.StringVar(&args.cert, "cert", "", "signing certificate `file` (PEM or DER)")
	f.StringVar(&args.variable, "var", "db", "variable: db, dbx, KEK or PK")
	f.StringVar(&args.esl, "esl", "", "signature list `file` to write (default: the owner's owner.esl)")
	f.BoolVar(&args.append, "append", true, "append to the variable instead of replacing it")
	return cmd
}

func runSecureBootUpdate(e *env, args secureBootUpdateArgs, out string) error {
	if args.key == "" || args.cert == "" {
		return fmt.Errorf("secureboot update: --key and --cert are required (the site's KEK pair for db)")
	}
	key, cert, err := secureboot.LoadSigner(args.key, args.cert)
	if err != nil {
		return err
	}
	esl := args.esl
	if esl == "" {
		esl = filepath.Join(server.SecureBootDir(args.stateDir), secureboot.ESLFile)
	}
	data, err := os.ReadFile(esl)
	if err != nil {
		return fmt.Errorf("secureboot update: %w (run sealroot secureboot init first)", err)
	}
	u := secureboot.Update{Name: args.variable, Data: data, Append: args.append, Time: time.Now()}
	b, err := u.Sign(key, cert)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("secureboot update: %w", err)
	}
	_, err = fmt.Fprintf(e.Stdout, "wrote %s: signed update of %s with %s, signed by %s\n", out, args.variable, esl, cert.Subject)
	return err
}
