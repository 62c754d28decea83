package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/version"
)

// newVersionCmd prints "sealroot <version> (commit <sha>)", the same line
// as --version; with --json, the version and the full commit.
func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit of this sealroot",
		Args:  cmdline.ExactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			if e.JSON {
				return e.printJSON(struct {
					Version string `json:"version"`
					Commit  string `json:"commit"`
				}{version.Version(), version.Commit()})
			}
			_, err := fmt.Fprintf(e.Stdout, "sealroot %s\n", version.String())
			return err
		},
	}
}
