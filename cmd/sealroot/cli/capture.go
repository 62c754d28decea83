package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newImageCaptureCmd(e *env) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "capture NAME --from MACHINE",
		Short: "Store a powered-off machine's iSCSI root as image NAME (its filesystem must be clean)",
		Long: `Store the current iSCSI root of MACHINE as the image NAME, to roll a prepared
template machine out to others.

The machine must be powered off: no attestation in progress and no iSCSI
session logged in to its root; a running machine is refused. Its root is
withdrawn for the capture (it gets it back when it boots again), and the
filesystem must be clean (shut down cleanly; e2fsck -fn finds no error).`,
		Args: exactArgs(1),
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
