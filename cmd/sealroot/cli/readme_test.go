package cli_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEQuickstartCommands reads the README's quickstart block and
// checks that every sealroot command in it exists with those flags, so
// the README cannot name a command or flag that is gone. (The full
// quickstart, package to attested VM, is TestQuickstartAsWritten's job.)
func TestREADMEQuickstartCommands(t *testing.T) {
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "<!-- quickstart")
	if !ok {
		t.Fatal("README has no <!-- quickstart --> block")
	}
	_, block, _ = strings.Cut(block, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	var n int
	for _, line := range strings.Split(block, "\n") {
		line, _, _ = strings.Cut(line, "#")
		args := strings.Fields(line)
		if len(args) == 0 || args[0] != "sealroot" {
			continue
		}
		n++
		r := run(t, "/nonexistent.sock", "", append(args[1:], "--help")...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("README quickstart %q: %s --help = %d %q", strings.TrimSpace(line), strings.Join(args, " "), r.code, r.stderr)
		}
		// --help of a misspelt subcommand shows its parent's help, which
		// lists subcommands: the command named must be a leaf.
		if strings.Contains(r.stdout, "Available Commands:") {
			t.Errorf("README quickstart %q does not name a command:\n%s", strings.TrimSpace(line), r.stdout)
		}
	}
	if n < 3 {
		t.Errorf("README quickstart has %d sealroot commands, want setup, machine list --pending, approve", n)
	}
}

// TestREADMECommandsExist checks every concrete sealroot command the
// README shows, in code blocks and inline (synopses with alternatives
// such as "list\|show" are left to the reference table), beyond the
// quickstart that vm-tests TestQuickstartAsWritten runs end to end: the
// command exists as a leaf and takes the flags shown.
func TestREADMECommandsExist(t *testing.T) {
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i, part := range strings.Split(string(b), "```") {
		if i%2 == 1 { // inside a fenced block
			lines = append(lines, strings.Split(part, "\n")...)
			continue
		}
		for j, span := range strings.Split(part, "`") {
			if j%2 == 1 && !strings.ContainsAny(span, "|[…") {
				lines = append(lines, span)
			}
		}
	}
	var n int
	for _, line := range lines {
		line, _, _ = strings.Cut(line, "#")
		for _, cmd := range strings.Split(line, " | ") {
			args := strings.Fields(cmd)
			if len(args) < 2 || args[0] != "sealroot" {
				continue
			}
			n++
			r := run(t, "/nonexistent.sock", "", append(args[1:], "--help")...)
			if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "Available Commands:") {
				t.Errorf("README %q: %s --help = %d %q", strings.TrimSpace(cmd), strings.Join(args, " "), r.code, r.stderr)
			}
		}
	}
	if n < 15 {
		t.Errorf("found %d sealroot commands in the README, want the quickstart's and the rest", n)
	}
	t.Logf("%d sealroot commands in the README", n)
}
