package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

// filesArgs are the flags of `files set`.
type filesArgs struct {
	mode     string
	owner    string
	template bool
}

// newFilesCmd is `sealroot machine files` (noun "machine", arg MACHINE)
// or `sealroot group files` (noun "group", arg GROUP).
func newFilesCmd(e *env, noun string) *cobra.Command {
	arg := strings.ToUpper(noun)
	owner := func(ref string) api.FileOwner {
		if noun == "group" {
			return api.FileOwner{Group: ref}
		}
		return api.FileOwner{Machine: ref}
	}
	var args filesArgs
	set := &cobra.Command{
		Use:   "set " + arg + " PATH [FILE|-]",
		Short: "Attach a file the agent writes at PATH in the root at every boot",
		Long: `Attach the contents of FILE (or stdin for "-" or none) as the file PATH that
the agent writes into the root of the ` + noun + `'s machines before switch_root,
at every boot, replacing what is there. A machine's own file wins over its
group's at the same path (or a path above or below it). Files are for
configuration and are not secret: use "sealroot secret" for secrets.

PATH is absolute and clean, not under /dev, /proc, /sys or /run. A file holds
at most 64 KiB; a machine or group at most 256 files and 1 MiB, and so does
one boot's merged set. With --template the file is a Go text/template
rendered per machine with .Name, .ID, .Group, .Address, .TunnelAddress and
.MACs (no printf, define or template; range only over .MACs, not nested).`,
		Args: cmdline.ArgsRange(2, 3),
		RunE: func(c *cobra.Command, pos []string) error {
			file := "-"
			if len(pos) == 3 {
				file = pos[2]
			}
			return runFilesSet(c, e, owner(pos[0]), pos[1], file, args)
		},
	}
	set.Flags().StringVar(&args.mode, "mode", "0644", "permission bits, octal")
	set.Flags().StringVar(&args.owner, "owner", "0:0", "numeric owner UID:GID in the booted system")
	set.Flags().BoolVar(&args.template, "template", false, "render the file as a Go text/template per machine")
	return cmdline.Group("files", "Files the agent writes into the "+noun+"'s root at every boot",
		set,
		&cobra.Command{
			Use:   "list " + arg,
			Short: "List the " + noun + "'s files",
			Args:  cmdline.ExactArgs(1),
			RunE:  func(c *cobra.Command, pos []string) error { return runFilesList(c, e, owner(pos[0])) },
		},
		&cobra.Command{
			Use:   "rm " + arg + " PATH",
			Short: "Remove one of the " + noun + "'s files (the root keeps the last copy written)",
			Args:  cmdline.ExactArgs(2),
			RunE:  func(c *cobra.Command, pos []string) error { return runFilesRm(c, e, owner(pos[0]), pos[1]) },
		},
	)
}

func runFilesSet(c *cobra.Command, e *env, owner api.FileOwner, path, file string, args filesArgs) error {
	f := api.File{Path: path, Template: args.template}
	mode, err := strconv.ParseUint(args.mode, 8, 32)
	if err != nil || mode > wire.MaxFileMode {
		return fmt.Errorf("--mode %q: want octal permission bits up to %o", args.mode, wire.MaxFileMode)
	}
	f.Mode = uint32(mode)
	if f.UID, f.GID, err = parseOwner(args.owner); err != nil {
		return err
	}
	if err := wire.CheckFilePath(path); err != nil {
		return err
	}
	if f.Content, err = readFileArg(e, file); err != nil {
		return err
	}
	if err := e.client().SetFile(c.Context(), owner, f); err != nil || e.JSON {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "set file %s of %s\n", safe(path), safe(owner.String()))
	return err
}

// parseOwner parses "UID:GID" (numeric).
func parseOwner(s string) (uid, gid uint32, err error) {
	u, g, ok := strings.Cut(s, ":")
	uu, err1 := strconv.ParseUint(u, 10, 32)
	gg, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil || uu == 1<<32-1 || gg == 1<<32-1 {
		return 0, 0, fmt.Errorf("--owner %q: want numeric UID:GID", s)
	}
	return uint32(uu), uint32(gg), nil
}

// readFileArg reads at most wire.MaxFileSize bytes from file, or stdin
// for "-".
func readFileArg(e *env, file string) ([]byte, error) {
	r, src := e.Stdin, "stdin"
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading file: %w", err)
		}
		defer f.Close()
		r, src = f, file
	} else if isTerminal(e.Stdin) {
		fmt.Fprintln(e.Stderr, "reading the file from stdin; end with Ctrl-D")
	}
	b, err := io.ReadAll(io.LimitReader(r, wire.MaxFileSize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading file from %s: %w", src, err)
	case len(b) > wire.MaxFileSize:
		return nil, fmt.Errorf("file from %s is larger than %d bytes", src, wire.MaxFileSize)
	}
	return b, nil
}

func runFilesList(c *cobra.Command, e *env, owner api.FileOwner) error {
	fs, err := e.client().Files(c.Context(), owner)
	if err != nil {
		return err
	}
	if e.JSON {
		if fs == nil {
			fs = []api.File{}
		}
		return e.printJSON(fs)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tMODE\tOWNER\tSIZE\tTEMPLATE")
	for _, f := range fs {
		tmpl := "-"
		if f.Template {
			tmpl = "yes"
		}
		fmt.Fprintf(tw, "%s\t%04o\t%d:%d\t%d\t%s\n", safe(f.Path), f.Mode, f.UID, f.GID, f.Size, tmpl)
	}
	return tw.Flush()
}

func runFilesRm(c *cobra.Command, e *env, owner api.FileOwner, path string) error {
	if err := e.client().DeleteFile(c.Context(), owner, path); err != nil || e.JSON {
		return err
	}
	_, err := fmt.Fprintf(e.Stdout, "removed file %s of %s\n", safe(path), safe(owner.String()))
	return err
}
