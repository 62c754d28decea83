package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/cmd/sealroot/cli"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

const (
	idA = "aaaaaaaa11111111111111111111111111111111111111111111111111111111"
	idB = "bbbbbbbb22222222222222222222222222222222222222222222222222222222"
)

var seen = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func testMachines() []*store.Machine {
	pcrs := map[int][]byte{0: bytes.Repeat([]byte{0xab}, 32), 7: bytes.Repeat([]byte{0x07}, 32)}
	return []*store.Machine{
		{ID: idA, Name: "web1", State: store.StateApproved, Policy: store.PolicyPinned,
			EKPublic: []byte("ek-a"), Approved: &store.BootState{PCRs: pcrs},
			Hints:    wire.Hints{Hostname: "web1", MACs: []string{"52:54:00:12:34:56"}, Firmware: "uefi", AgentVer: "1.2.0 (commit 0123456789ab)"},
			LastSeen: seen, LastAddress: "10.0.0.5", BootCount: 42},
		{ID: idB, State: store.StateNeedsReapproval, Policy: store.PolicyPinned,
			Hints:    wire.Hints{Hostname: "evil\x1b[2Jhost"},
			Approved: &store.BootState{PCRs: pcrs}, Reported: &store.BootState{PCRs: pcrs},
			Diff: "PCR 4: EV_EFI_BOOT_SERVICES_APPLICATION changed\nPCR 9: kernel changed",
			History: []store.BootAttempt{
				{Time: seen, Server: "sr-1", Remote: "10.0.0.6:4242", Outcome: "needs-reapproval", Check: "policy",
					Reason: "boot state changed", AgentVersion: "0.3.0", Duration: 41 * time.Millisecond},
				{Time: seen.Add(time.Minute), Server: "sr-1", Remote: "10.0.0.6:4243", Outcome: "refused", Check: "event-log",
					Reason: "PCR 15\x1b[2J is not zero", AgentVersion: "0.3.0", Duration: 12 * time.Millisecond},
			}},
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the CLI in-process against socket with stdin.
func run(t *testing.T, socket, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--socket", socket}, args...)
	code := cli.Main(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

func serve(t *testing.T) (*apitest.Service, string) {
	t.Helper()
	svc := apitest.NewService(t, testMachines()...)
	return svc, apitest.Serve(t, svc)
}

func TestMachineList(t *testing.T) {
	_, sock := serve(t)
	r := run(t, sock, "", "machine", "list")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want := "" +
		"ID            NAME  STATE             LAST-SEEN             BOOTS  LAST-BOOT             LAST-OUTCOME\n" +
		"aaaaaaaa1111  web1  approved          2026-03-04T05:06:07Z  42     -                     -\n" +
		"bbbbbbbb2222  -     needs-reapproval  -                     0      2026-03-04T05:07:07Z  refused(event-log)\n"
	if r.stdout != want {
		t.Errorf("machine list =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestMachineListJSON(t *testing.T) {
	_, sock := serve(t)
	r := run(t, sock, "", "--json", "machine", "list")
	var ms []*api.Machine
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || r.code != 0 {
		t.Fatalf("exit %d, stdout %q does not parse: %v", r.code, r.stdout, err)
	}
	if len(ms) != 2 || ms[0].ID != idA || ms[0].BootCount != 42 || !ms[0].LastSeen.Equal(seen) {
		t.Errorf("parsed %+v, want the two test machines", ms)
	}
	empty := run(t, apitest.Serve(t, apitest.NewService(t)), "", "--json", "machine", "list")
	if strings.TrimSpace(empty.stdout) != "[]" {
		t.Errorf("empty list JSON = %q, want []", empty.stdout)
	}
}

func TestMachineShow(t *testing.T) {
	_, sock := serve(t)
	r := run(t, sock, "", "machine", "show", "web1")
	for _, want := range []string{
		"State:          approved\n", "ID:             " + idA + "\n", "Name:           web1\n",
		"EK fingerprint: sha256:", "Policy:         pinned\n",
		"Hints:          hostname=web1 mac=52:54:00:12:34:56 firmware=uefi\n",
		"Agent:          1.2.0 (commit 0123456789ab)\n",
		"Last seen:      2026-03-04T05:06:07Z from 10.0.0.5\n", "Boot count:     42\n",
		"Pinned PCRs:\n   0: abababababababab…\n   7: 0707070707070707…\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("machine show lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Changes since approval") {
		t.Errorf("approved machine shows a diff:\n%s", r.stdout)
	}

	r = run(t, sock, "", "machine", "show", "bbbbbbbb")
	for _, want := range []string{
		"State:          needs-reapproval\n",
		"Changes since approval:\n  PCR 4: EV_EFI_BOOT_SERVICES_APPLICATION changed\n  PCR 9: kernel changed\n",
		`hostname="evil\x1b[2Jhost"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("machine show lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("machine show printed a raw escape character from a hint:\n%q", r.stdout)
	}
}

func TestMachineMutations(t *testing.T) {
	svc, sock := serve(t)
	r := run(t, sock, "", "machine", "approve", "bbbbbbbb", "--name", "db1", "--policy", "identity-only")
	if r.code != 0 || r.stdout != "approved bbbbbbbb2222 db1 (policy identity-only)\n" {
		t.Fatalf("approve = %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, sock, "", "--json", "machine", "revoke", "db1", "--reason", "disk stolen")
	var m api.Machine
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.State != api.StateRevoked || m.Reason != "disk stolen" {
		t.Fatalf("revoke --json = %q (%v)", r.stdout, err)
	}
	r = run(t, sock, "", "machine", "forget", "--yes", "db1")
	if r.code != 0 || r.stdout != "forgot bbbbbbbb2222 db1; no roots on the server\n" {
		t.Fatalf("forget = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if ms, _ := svc.Machines(context.Background()); len(ms) != 1 {
		t.Errorf("%d machines left after forget, want 1", len(ms))
	}
}

func TestSecretSet(t *testing.T) {
	svc, sock := serve(t)
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"stdin_implicit", "from-stdin", []string{"web1", "a"}, "from-stdin"},
		{"stdin_dash", "dash\x00bytes", []string{"web1", "b", "-"}, "dash\x00bytes"},
		{"file", "ignored", []string{"web1", "c", file}, "from-file\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, sock, tt.stdin, append([]string{"secret", "set"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if v, _ := svc.Secret(idA, tt.args[1]); string(v) != tt.want {
				t.Errorf("stored %q, want %q", v, tt.want)
			}
		})
	}
	r := run(t, sock, "", "secret", "list", "web1")
	if r.stdout != "a\nb\nc\n" {
		t.Errorf("secret list = %q", r.stdout)
	}
	r = run(t, sock, "", "--json", "secret", "list", "web1")
	var names []string
	if err := json.Unmarshal([]byte(r.stdout), &names); err != nil || len(names) != 3 {
		t.Errorf("secret list --json = %q (%v)", r.stdout, err)
	}
	if r := run(t, sock, "", "secret", "rm", "web1", "b"); r.code != 0 {
		t.Fatalf("secret rm: %d %s", r.code, r.stderr)
	}
	if _, ok := svc.Secret(idA, "b"); ok {
		t.Error("secret b still stored after rm")
	}
}

func TestErrors(t *testing.T) {
	_, sock := serve(t)
	missing := filepath.Join(t.TempDir(), "nope.sock")
	tests := []struct {
		name       string
		socket     string
		stdin      string
		args       []string
		wantCode   int
		wantStderr string // first line
	}{
		{"no_command", sock, "", nil, 2, `sealroot: "sealroot" needs a subcommand`},
		{"unknown_command", sock, "", []string{"frobnicate"}, 2, `sealroot: unknown command "frobnicate" for "sealroot"`},
		{"unknown_verb", sock, "", []string{"machine", "frob"}, 2, `sealroot: unknown command "frob" for "sealroot machine"`},
		{"show_missing_arg", sock, "", []string{"machine", "show"}, 2, `sealroot: "sealroot machine show" needs 1 argument(s), got 0`},
		{"secret_set_missing_name", sock, "x", []string{"secret", "set", "web1"}, 2, `sealroot: "sealroot secret set" needs 2 argument(s), got 1`},
		{"unknown_flag", sock, "", []string{"machine", "list", "--bogus"}, 2, "sealroot: unknown flag: --bogus"},
		{"bad_policy", sock, "", []string{"machine", "approve", "web1", "--policy", "yolo"}, 2, `sealroot: --policy must be one of [pinned predicted identity-only], not "yolo"`},
		{"unknown_machine", sock, "", []string{"machine", "show", "nope"}, 1, `sealroot: machine "nope": not found`},
		{"conflict", sock, "", []string{"machine", "approve", "web1"}, 1, "sealroot: conflict: machine aaaaaaaa1111 is approved; only pending or needs-reapproval machines can be approved"},
		{"empty_secret", sock, "", []string{"secret", "set", "web1", "k"}, 1, "sealroot: secret value is empty (read from stdin)"},
		{"secret_too_big", sock, strings.Repeat("x", 64<<10+1), []string{"secret", "set", "web1", "k"}, 1, "sealroot: secret from stdin is larger than 65536 bytes"},
		{"secret_file_missing", sock, "", []string{"secret", "set", "web1", "k", "/nonexistent/key"}, 1, "sealroot: reading secret: open /nonexistent/key: no such file or directory"},
		{"bad_secret_name", sock, "v", []string{"secret", "set", "web1", "a b"}, 1, `sealroot: invalid: secret name "a b": want 1-64 of [A-Za-z0-9._-]`},
		{"no_server", missing, "", []string{"machine", "list"}, 1, `sealroot: cannot reach sealroot at ` + missing + `: is "sealroot serve" running?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.socket, tt.stdin, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", r.code, tt.wantCode)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			first, rest, _ := strings.Cut(r.stderr, "\n")
			if first != tt.wantStderr {
				t.Errorf("stderr first line = %q, want %q", first, tt.wantStderr)
			}
			hasUsage := strings.Contains(rest, "Usage:")
			if tt.wantCode == 2 && !hasUsage {
				t.Errorf("usage error without usage:\n%s", r.stderr)
			}
			if tt.wantCode == 1 && rest != "" {
				t.Errorf("stderr has more than one line:\n%s", r.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	r := run(t, "/nonexistent", "", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "machine") || r.stderr != "" {
		t.Errorf("--help = %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestMachineApproveWarnsUnmeasured: approving a boot state that does not
// measure the initramfs and command line (here: no PCR 11 or 12 events)
// succeeds but warns that the server will refuse the machine's boots,
// unless the policy is identity-only.
func TestMachineApproveWarnsUnmeasured(t *testing.T) {
	_, sock := serve(t)
	r := run(t, sock, "", "machine", "approve", "bbbbbbbb")
	const want = "warning: the server will refuse this machine's boots: boot-measurement: the event log does not measure the initramfs or the kernel command line"
	if r.code != 0 || !strings.HasPrefix(r.stderr, want) {
		t.Fatalf("approve = %d %q, stderr %q; want a warning starting %q", r.code, r.stdout, r.stderr, want)
	}
	// machine show says so too (web1 was approved on PCRs without events).
	r = run(t, sock, "", "machine", "show", "web1")
	if !strings.Contains(r.stdout, "the server refuses such boots (boot-measurement: the event log does not measure the initramfs") {
		t.Errorf("machine show of an unmeasured approved boot does not say it is refused:\n%s", r.stdout)
	}
	_, sock = serve(t)
	r = run(t, sock, "", "machine", "approve", "bbbbbbbb", "--policy", "identity-only")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("approve --policy identity-only = %d, stderr %q; want no warning", r.code, r.stderr)
	}
}
