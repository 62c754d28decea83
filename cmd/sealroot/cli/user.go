package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/server/api"
)

func newUserCmd(e *env) *cobra.Command {
	return cmdline.Group("user", "Manage sealroot's own users (for per-user roots)", append([]*cobra.Command{
		&cobra.Command{
			Use:   "add NAME",
			Short: "Add a user; the password is read from the terminal (twice, not echoed) or the first line of stdin",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return runUserPassword(c, e, args[0], true)
			},
		},
		&cobra.Command{
			Use:   "passwd NAME",
			Short: "Set a user's password (read as for add)",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return runUserPassword(c, e, args[0], false)
			},
		},
		&cobra.Command{
			Use:   "rm NAME",
			Short: "Remove a user",
			Args:  cmdline.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := e.client().RemoveUser(c.Context(), args[0]); err != nil || e.JSON {
					return err
				}
				_, err := fmt.Fprintf(e.Stdout, "removed user %s\n", safe(args[0]))
				return err
			},
		},
		&cobra.Command{
			Use:   "list",
			Short: "List users",
			Args:  cmdline.ExactArgs(0),
			RunE:  func(c *cobra.Command, _ []string) error { return runUserList(c, e) },
		},
	}, newUserRootCmds(e)...)...)
}

func runUserPassword(c *cobra.Command, e *env, name string, add bool) error {
	pw, err := readPassword(e, name)
	if err != nil {
		return err
	}
	defer clear(pw)
	verb := "set the password of"
	if add {
		verb = "added"
		err = e.client().AddUser(c.Context(), name, pw)
	} else {
		err = e.client().SetPassword(c.Context(), name, pw)
	}
	if err != nil || e.JSON {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "%s user %s\n", verb, safe(name))
	return err
}

var errPasswordsDiffer = errors.New("the passwords differ")

// readPassword reads a password: on a terminal twice without echo,
// otherwise the first line of stdin.
func readPassword(e *env, name string) ([]byte, error) {
	if f, ok := e.Stdin.(*os.File); ok && isTerminal(e.Stdin) {
		fmt.Fprintf(e.Stderr, "password for %s: ", safe(name))
		pw, err := readNoEcho(f)
		fmt.Fprintln(e.Stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(e.Stderr, "again: ")
		again, err := readNoEcho(f)
		fmt.Fprintln(e.Stderr)
		defer clear(again)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			clear(pw)
			return nil, errPasswordsDiffer
		}
		return checkPasswordInput(pw)
	}
	return readPasswordLine(e.Stdin)
}

// readPasswordLine reads the first line of r, without its line end.
func readPasswordLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, api.MaxPassword+2), api.MaxPassword+2).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	return checkPasswordInput(bytes.Clone(line))
}

func checkPasswordInput(pw []byte) ([]byte, error) {
	switch {
	case len(pw) == 0:
		return nil, errors.New("empty password")
	case len(pw) > api.MaxPassword:
		clear(pw)
		return nil, fmt.Errorf("password longer than %d bytes", api.MaxPassword)
	}
	return pw, nil
}

// readNoEcho reads a line from the terminal f with echo off.
func readNoEcho(f *os.File) ([]byte, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	return readPasswordLine(f)
}

func runUserList(c *cobra.Command, e *env) error {
	us, err := e.client().Users(c.Context())
	if err != nil {
		return err
	}
	if e.JSON {
		if us == nil {
			us = []api.User{}
		}
		return e.printJSON(us)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tPASSWORD SET")
	for _, u := range us {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", safe(u.Name), formatTime(u.Created), formatTime(u.Changed))
	}
	return tw.Flush()
}
