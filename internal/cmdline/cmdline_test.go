package cmdline

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func run(args ...string) (int, string) {
	leaf := &cobra.Command{Use: "leaf", Args: ExactArgs(1), RunE: func(*cobra.Command, []string) error {
		return errors.New("it\nfailed")
	}}
	root := Group("prog", "a test program", leaf)
	var out, errOut bytes.Buffer
	Setup(root, &out, &errOut)
	root.SetArgs(args)
	return Exit("prog", root.Execute(), &errOut), errOut.String()
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"leaf", "x"}, 1, "prog: it failed\n"},            // a run error: one line, no usage
		{nil, 2, `"prog" needs a subcommand`},                      // a group alone
		{[]string{"nope"}, 2, `unknown command "nope" for "prog"`}, // an unknown subcommand
		{[]string{"leaf"}, 2, `"prog leaf" needs 1 argument(s), got 0`},
		{[]string{"leaf", "x", "y"}, 2, `takes at most 1 argument(s), got 2`},
		{[]string{"leaf", "--bad"}, 2, "unknown flag: --bad"},
	} {
		code, stderr := run(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d with %q", tc.args, code, stderr, tc.code, tc.want)
		}
		if usage := strings.Contains(stderr, "Usage:"); usage != (tc.code == 2) {
			t.Errorf("%q: usage printed = %v, want %v", tc.args, usage, tc.code == 2)
		}
	}
}
