package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

func newImageCmd(e *env) *cobra.Command {
	var yes bool
	return cmdline.Group("image", "Import, list and remove base images",
		newImageImportCmd(e),
		newImageListCmd(e),
		addYes(&cobra.Command{
			Use:   "rm NAME|NAME@vN",
			Short: "Forget one version or every version of an image, refused while a plan, root or snapshot uses it",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := confirm(c, e, yes, "forget image "+safe(args[0])); err != nil {
					return err
				}
				return runImageRm(c, e, args[0])
			},
		}, &yes),
		newImageRolloutCmd(e),
		&cobra.Command{
			Use:   "gc",
			Short: "Delete bases that no image version, machine root or snapshot references; say what is kept and why",
			Args:  cmdline.ExactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runImageGC(c, e) },
		},
		newImageCaptureCmd(e),
		&cobra.Command{
			Use: "pull sha256:DIGEST|NAME|NAME@vN",
			Short: "Fetch a base, or an image version with its number, from a running server sharing the store that holds it " +
				"(NAME: the highest version a peer holds); the bytes are kept only if they hash to the digest",
			Args: cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error { return runImagePull(c, e, args[0]) },
		},
	)
}

func runImagePull(c *cobra.Command, e *env, ref string) error {
	res, err := e.client().PullImage(c.Context(), ref)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(res)
	}
	from := "already here"
	if res.From != "" {
		from = "fetched from " + safe(res.From) + ", digest verified"
	}
	fmt.Fprintf(e.Stdout, "base sha256:%s (%s)\n", res.Digest, from)
	for _, im := range res.Versions {
		fmt.Fprintf(e.Stdout, "image %s@v%d\n", safe(im.Name), im.Version)
	}
	return nil
}

func newImageImportCmd(e *env) *cobra.Command {
	var oci string
	c := &cobra.Command{
		Use: "import NAME (SOURCE | --oci REF|DIR|TAR)",
		Short: "Import a directory tree or tar archive, or an OCI/Docker image (registry reference, OCI layout directory, " +
			"`docker save` archive), on the server's host, as the next version of NAME (NAME@vN)",
		Args: cmdline.ArgsRange(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			switch {
			case oci == "" && len(args) == 2:
				abs, err := filepath.Abs(args[1])
				if err != nil {
					return err
				}
				return runImageImport(c, e, args[0], abs)
			case oci != "" && len(args) == 1:
				return runImageImport(c, e, args[0], ociSource(oci))
			}
			return cmdline.Usagef(c, "want NAME SOURCE, or NAME --oci REF|DIR|TAR")
		},
	}
	c.Flags().StringVar(&oci, "oci", "", "an OCI/Docker image: docker://REF or REF (a registry), or a path to an OCI layout directory or `docker save` archive")
	return c
}

// ociSource is the server's import source for --oci: an existing path is
// a layout or archive (oci:ABS), anything else a registry reference.
func ociSource(ref string) string {
	if strings.HasPrefix(ref, "docker://") {
		return ref
	}
	if _, err := os.Stat(ref); err == nil {
		if abs, err := filepath.Abs(ref); err == nil {
			return "oci:" + abs
		}
	}
	return "docker://" + ref
}

func runImageImport(c *cobra.Command, e *env, name, abs string) error {
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
	_, err = fmt.Fprintf(e.Stdout, "imported %s@v%d sha256:%s (%d bytes)\n", safe(im.Name), im.Version, im.Digest, im.Size)
	return err
}

func newImageListCmd(e *env) *cobra.Command {
	var peers bool
	c := &cobra.Command{
		Use:   "list [--peers]",
		Short: "List this server's images, or with --peers those of each running server sharing the store",
		Args:  cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			if peers {
				return runImageListPeers(c, e)
			}
			return runImageList(c, e)
		},
	}
	c.Flags().BoolVar(&peers, "peers", false, "list the images of each running server sharing the store (each keeps its own; `image pull` fetches one)")
	return c
}

func runImageListPeers(c *cobra.Command, e *env) error {
	all, err := e.client().PeerImages(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		if all == nil {
			all = []api.PeerImages{}
		}
		return e.printJSON(all)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tIMAGE\tDIGEST\tSIZE\tIMPORTED")
	for _, pi := range all {
		if pi.Error != "" {
			fmt.Fprintf(tw, "%s\t(no answer: %s)\t\t\t\n", safe(pi.Server), safe(pi.Error))
		}
		for _, im := range pi.Images {
			fmt.Fprintf(tw, "%s\t%s@v%d\tsha256:%s\t%d\t%s\n", safe(pi.Server), safe(im.Name), im.Version, shortDigest(im.Digest), im.Size, formatTime(im.Imported))
		}
	}
	return tw.Flush()
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
	fmt.Fprintln(tw, "IMAGE\tLATEST\tDIGEST\tSIZE\tIMPORTED\tUSED BY")
	for _, im := range ims {
		latest := ""
		if im.Latest {
			latest = "yes"
		}
		used := "-"
		if len(im.UsedBy) > 0 {
			used = safe(strings.Join(im.UsedBy, ", "))
		}
		fmt.Fprintf(tw, "%s@v%d\t%s\tsha256:%s\t%d\t%s\t%s\n", safe(im.Name), im.Version, latest, shortDigest(im.Digest), im.Size,
			formatTime(im.Imported), used)
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func runImageRm(c *cobra.Command, e *env, ref string) error {
	removed, err := e.client().RemoveImage(c.Context(), ref)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(api.RemoveResult{Removed: append([]api.Image{}, removed...)})
	}
	for _, im := range removed {
		fmt.Fprintf(e.Stdout, "removed image %s@v%d (sha256:%s; its base goes at the next gc)\n", safe(im.Name), im.Version, shortDigest(im.Digest))
	}
	return nil
}

func runImageGC(c *cobra.Command, e *env) error {
	res, err := e.client().GCImages(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(res)
	}
	for _, d := range res.Removed {
		fmt.Fprintf(e.Stdout, "removed base sha256:%s\n", shortDigest(d))
	}
	for _, k := range res.Kept {
		fmt.Fprintf(e.Stdout, "kept base sha256:%s: used by %s\n", shortDigest(k.Digest), safe(strings.Join(k.UsedBy, "; ")))
	}
	_, err = fmt.Fprintf(e.Stdout, "%d bases removed, %d kept\n", len(res.Removed), len(res.Kept))
	return err
}
