package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/secureboot"
)

type secureBootArgs struct {
	stateDir string
	name     string
	force    bool
}

func newSecureBootCmd(e *env) *cobra.Command {
	var args secureBootArgs
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the Secure Boot owner key that signs served EFI images",
		Long: `Create an RSA-2048 owner key and certificate in <state-dir>/secureboot, with
the files a site enrolls: owner.esl (an EFI signature list for db, from the
firmware setup or in Setup Mode) and owner.der (a MOK for Debian's shim:
mokutil --import owner.der). An existing key is kept unless --force.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runSecureBootInit(e, args) },
	}
	f := initCmd.Flags()
	f.StringVar(&args.stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	f.StringVar(&args.name, "name", "sealroot Secure Boot owner", "certificate common `name`")
	f.BoolVar(&args.force, "force", false, "replace an existing key; machines must enroll the new one")

	var signDir string
	signCmd := &cobra.Command{
		Use:   "sign IN OUT",
		Short: "Sign an EFI image (UKI, iPXE) with the owner key (sbsign)",
		Args:  cmdline.ExactArgs(2),
		RunE: func(c *cobra.Command, a []string) error {
			if err := secureboot.Sign(c.Context(), server.SecureBootDir(signDir), a[0], a[1]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(e.Stdout, "signed %s\n", a[1])
			return err
		},
	}
	signCmd.Flags().StringVar(&signDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	return cmdline.Group("secureboot", "Sign served EFI images for UEFI Secure Boot", initCmd, signCmd, newSecureBootUpdateCmd(e))
}

func runSecureBootInit(e *env, args secureBootArgs) error {
	dir := server.SecureBootDir(args.stateDir)
	err := secureboot.Init(dir, args.name, args.force)
	if errors.Is(err, secureboot.ErrExists) {
		return fmt.Errorf("%w; use --force to replace it", err)
	}
	if err != nil {
		return err
	}
	fp, err := secureboot.Fingerprint(dir)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(struct {
			Dir         string `json:"dir"`
			Fingerprint string `json:"sha256"`
		}{dir, fp})
	}
	_, err = fmt.Fprintf(e.Stdout, "owner certificate: %s (sha256 %s)\nenroll in db: %s\nenroll as MOK: %s\n",
		filepath.Join(dir, secureboot.CertFile), fp, filepath.Join(dir, secureboot.ESLFile), filepath.Join(dir, secureboot.DERFile))
	return err
}
