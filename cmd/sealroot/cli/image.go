package cli

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/server/api"
)

func newImageCmd(e *env) *cobra.Command {
	return newGroupCmd("image", "Import, list and remove base images",
		&cobra.Command{
			Use:   "import NAME SOURCE",
			Short: "Import a directory tree or tar archive (on the server's host) as an ext4 base image",
			Args:  exactArgs(2),
			RunE:  func(c *cobra.Command, args []string) error { return runImageImport(c, e, args[0], args[1]) },
		},
		&cobra.Command{
			Use:   "list",
			Short: "List images",
			Args:  exactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runImageList(c, e) },
		},
		&cobra.Command{
			Use:   "rm NAME",
			Short: "Forget an image name; its base goes at the next gc unless a volume uses it",
			Args:  exactArgs(1),
			RunE:  func(c *cobra.Command, args []string) error { return runImageRm(c, e, args[0]) },
		},
		&cobra.Command{
			Use:   "gc",
			Short: "Delete bases that no image and no machine volume references",
			Args:  exactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runImageGC(c, e) },
		},
		newImageCaptureCmd(e),
	)
}

func runImageImport(c *cobra.Command, e *env, name, source string) error {
	abs, err := filepath.Abs(source)
	if err != nil {
		return err
	}
	if !e.JSON {
		fmt.Fprintf(e.Stderr, "importing %s from %s (the server logs progress)...\n", safe(name), safe(abs))
	}
	im, err := e.client().ImportImage(c.Context(), name, abs)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(im)
	}
	_, err = fmt.Fprintf(e.Stdout, "imported %s sha256:%s (%d bytes)\n", safe(im.Name), im.Digest, im.Size)
	return err
}

func runImageList(c *cobra.Command, e *env) error {
	ims, err := e.client().Images(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		if ims == nil {
			ims = []api.Image{}
		}
		return e.printJSON(ims)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tIMPORTED")
	for _, im := range ims {
		fmt.Fprintf(tw, "%s\tsha256:%s\t%d\t%s\n", safe(im.Name), shortDigest(im.Digest), im.Size, formatTime(im.Imported))
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func runImageRm(c *cobra.Command, e *env, name string) error {
	if err := e.client().RemoveImage(c.Context(), name); err != nil {
		return err
	}
	if e.JSON {
		return nil
	}
	_, err := fmt.Fprintf(e.Stdout, "removed image %s\n", safe(name))
	return err
}

func runImageGC(c *cobra.Command, e *env) error {
	removed, err := e.client().GCImages(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(api.GCResult{Removed: append([]string{}, removed...)})
	}
	for _, d := range removed {
		fmt.Fprintf(e.Stdout, "removed base sha256:%s\n", d)
	}
	_, err = fmt.Fprintf(e.Stdout, "%d bases removed\n", len(removed))
	return err
}
