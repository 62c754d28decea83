package cli

import (
	"fmt"

	"github.com/sealroot/sealroot/internal/cmdline"

	"github.com/spf13/cobra"
)

func newImageCaptureCmd(e *env) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "capture NAME --from MACHINE",
		Short: "Store a powered-off machine's iSCSI or NFS root as the next version of image NAME",
		Long: `Store the current root of MACHINE as the next version of image NAME, to roll a
prepared template machine out to others (sealroot group upgrade).

An iSCSI root is its volume's filesystem, which must be clean (shut down
cleanly; e2fsck -fn finds no error). An NFS root is the machine's overlay
upper merged with the base it was made on, as the machine saw it (deleted
files stay deleted).

The machine must be powered off: no attestation in progress, no iSCSI
session logged in to its root, no NFS export in use (its tunnel peer had no
handshake for three minutes); a running machine is refused, saying which.
Its root is withdrawn for the capture (it gets it back when it boots again).`,
		Args: cmdline.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if from == "" {
				return fmt.Errorf("image capture: --from MACHINE is required")
			}
			if !e.JSON {
				fmt.Fprintf(e.Stderr, "capturing the root of %s as %s...\n", safe(from), safe(args[0]))
			}
			im, err := e.client().CaptureImage(c.Context(), args[0], from)
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(im)
			}
			_, err = fmt.Fprintf(e.Stdout, "captured %s sha256:%s (%d bytes)\n", safe(im.Name), im.Digest, im.Size)
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the machine whose root to capture (ID, ID prefix or name)")
	return cmd
}
