package cli

import (
	"fmt"
	"math"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
)

type ekImportArgs struct {
	stateDir string
	paths    []string
}

func newEKCmd(e *env) *cobra.Command {
	var args ekImportArgs
	importCmd := &cobra.Command{
		Use:   "import FILE|DIR...",
		Short: "Add TPM manufacturer CAs and EK certificates to the EK trust store",
		Long: `Read certificates (PEM or DER; in a directory *.pem, *.crt, *.cer and
*.der files) and sort them into <state-dir>/ek: self-signed CA certificates
become trusted manufacturer roots, other CA certificates intermediates, and
the rest EK certificates, found by their key for TPMs that carry none (Intel
PTT before 11th-gen Core, AMD fTPM) on air-gapped sites.

The server reads roots and intermediates when it starts: restart it after
importing CAs. EK certificates are used at once.`,
		Args: cmdline.ArgsRange(1, math.MaxInt),
		RunE: func(c *cobra.Command, paths []string) error {
			args.paths = paths
			return runEKImport(e, args)
		},
	}
	importCmd.Flags().StringVar(&args.stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	return cmdline.Group("ek", "Manage TPM endorsement-key trust", importCmd)
}

func runEKImport(e *env, args ekImportArgs) error {
	certs, err := pki.ReadCertificates(args.paths...)
	if err != nil {
		return err
	}
	if len(certs) == 0 {
		return fmt.Errorf("no certificates in %q", args.paths)
	}
	n, err := server.EKDirs(args.stateDir).Import(certs)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(struct {
			Roots         int `json:"roots"`
			Intermediates int `json:"intermediates"`
			EKCerts       int `json:"ek_certs"`
		}{n.Roots, n.Intermediates, n.EKCerts})
	}
	_, err = fmt.Fprintf(e.Stdout, "imported %d manufacturer roots, %d intermediates, %d EK certificates\n", n.Roots, n.Intermediates, n.EKCerts)
	if err == nil && n.Roots+n.Intermediates > 0 {
		_, err = fmt.Fprintln(e.Stderr, "restart sealroot serve to trust the new CAs")
	}
	return err
}
