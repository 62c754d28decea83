package vmtest

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// Passwords typed on the VMs' consoles; none may show on a console.
const (
	vmAlicePW = "alice-Vm-Secret-1"
	vmBobPW   = "bob-Vm-Secret-2"
	vmWrongPW = "Wrong-Vm-Guess-3"
)

// rePerUser is the agent's line before its login prompt.
const rePerUser = `sealroot: this machine's root is per user: log in to mount yours$`

// TestPerUserRootFollowsUser: machines whose root is per user ask for a
// login on the serial console after attestation. Alice logs in on
// machine 1 (after a wrong password, refused) and her fresh root gets a
// marker, and machine 1 stays up; on machine 2 her login is refused while
// machine 1 holds her root, and Bob gets his own fresh root there; once machine 1
// powers off, the server sees it let go (its iSCSI session ends, its
// tunnel peer falls silent) and frees her root without an operator, and
// machine 2's next boot as Alice finds her marker. (`sealroot user free`
// is covered by the CLI tests.)
func TestPerUserRootFollowsUser(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tpm1, tpm2 := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpm1, tpm2}, Extra: withShortLetGo(tunnelISCSIConfig)})
	if perUserInit == counterInit {
		t.Fatal("perUserInit: counterInit no longer ends in a poweroff to replace")
	}
	if _, err := sr.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, perUserInit)); err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{"alice": vmAlicePW, "bob": vmBobPW} {
		if _, err := sr.CLIStdin(ctx, pw+"\n", "user", "add", user); err != nil {
			t.Fatal(err)
		}
	}
	vm1 := newPerUserMachine(ctx, t, lab, sr, "vm-desk-1", tpm1) // runs until alice_follows_to_machine_2
	t.Run("alice_on_machine_1", func(t *testing.T) {
		defer noPasswordShown(t, vm1)
		typeLogin(t, vm1, "alice", vmWrongPW)
		expectBoot(ctx, t, vm1, `login refused: wrong user name or password$`)
		typeLogin(t, vm1, "alice", vmAlicePW)
		expectRootUp(ctx, t, vm1, `root: marker=none$`)
	})
	t.Run("alice_refused_on_machine_2_bob_own_root", func(t *testing.T) {
		vm := newPerUserMachine(ctx, t, lab, sr, "vm-desk-2", tpm2)
		defer noPasswordShown(t, vm)
		typeLogin(t, vm, "alice", vmAlicePW)
		expectBoot(ctx, t, vm, `login refused: the root of user alice is in use on machine vm-desk-1 `)
		typeLogin(t, vm, "bob", vmBobPW)
		expectRootUp(ctx, t, vm, `root: marker=none$`)
	})
	t.Run("alice_follows_to_machine_2", func(t *testing.T) {
		vm1.Kill() // powered off: no logout, the session and the tunnel go silent
		waitUserRootFreed(ctx, t, sr, "alice", 4*time.Minute)
		vm := startLoginPXE(ctx, t, lab, "vm-desk-2b", tpm2)
		defer noPasswordShown(t, vm)
		expectBoot(ctx, t, vm, rePerUser)
		typeLogin(t, vm, "alice", vmAlicePW)
		expectRoot(ctx, t, vm, `root: marker=1$`)
	})
}

// heldRoot is a line of `sealroot --json user roots`.
type heldRoot struct {
	User string `json:"user"`
}

// waitUserRootFreed waits until no machine holds user's root.
func waitUserRootFreed(ctx context.Context, t *testing.T, sr *Sealroot, user string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		out, err := sr.CLI(ctx, "--json", "user", "roots")
		if err != nil {
			t.Fatal(err)
		}
		var held []heldRoot
		if err := json.Unmarshal([]byte(out), &held); err != nil {
			t.Fatalf("user roots --json: %v: %q", err, out)
		}
		if !slices.ContainsFunc(held, func(h heldRoot) bool { return h.User == user }) {
			t.Logf("root of user %s freed %s after power-off", user, time.Since(start).Round(time.Second))
			return
		}
		if time.Since(start) > within {
			t.Fatalf("root of user %s still held %s after its machine powered off", user, within)
		}
		time.Sleep(2 * time.Second)
	}
}

// perUserInit is counterInit, except that a fresh root (no marker yet)
// stays up: the machine keeps its user's root mounted until it is
// powered off.
var perUserInit = strings.Replace(counterInit, "$B poweroff -f\n",
	"[ \"$m\" = none ] && while :; do $B sleep 3600; done\n$B poweroff -f\n", 1)

// expectRootUp is expectRoot for a machine that stays up.
func expectRootUp(ctx context.Context, t *testing.T, vm *VM, marker string) {
	t.Helper()
	for _, re := range []string{`sealroot: \[ok\] tunnel `, `sealroot: \[ok\] root `, marker, `root: wrote marker`} {
		m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|`+re+`)`)
		if m[1] != "" {
			t.Fatalf("agent failed: %s", m[1])
		}
	}
}

// noPasswordShown checks that no password typed shows on vm's console.
func noPasswordShown(t *testing.T, vm *VM) {
	t.Helper()
	b, err := os.ReadFile(vm.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{vmAlicePW, vmBobPW, vmWrongPW} {
		if strings.Contains(string(b), pw) {
			t.Errorf("console of %s shows a password", vm.opts.Name)
		}
	}
}

// newPerUserMachine boots a new machine: pending, its root set to a
// per-user iSCSI root over testroot, approved as name; it returns once
// the agent asks for a login.
func newPerUserMachine(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, name string, tp *TPM) *VM {
	t.Helper()
	vm := startLoginPXE(ctx, t, lab, name, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	if _, err := sr.CLI(ctx, "machine", "set-root", id, "--kind", "iscsi", "--image", "testroot", "--per-user"); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, approveArgs(id, name, BIOS)...); err != nil {
		t.Fatal(err)
	}
	expectBoot(ctx, t, vm, rePerUser)
	return vm
}

// startLoginPXE starts a BIOS VM that boots from its NIC with console
// input.
func startLoginPXE(ctx context.Context, t *testing.T, lab *Lab, name string, tp *TPM) *VM {
	t.Helper()
	vm := lab.NewVM(t, VMOptions{Name: name, Firmware: BIOS, TPM: tp, PXE: true, Input: true})
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return vm
}

// typeLogin types a user name and, once the agent has had time to turn
// the console's echo off, the password.
func typeLogin(t *testing.T, vm *VM, user, pw string) {
	t.Helper()
	time.Sleep(2 * time.Second) // the prompt "sealroot login: " ends no line to wait for
	if err := vm.Type(user + "\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := vm.Type(pw + "\n"); err != nil {
		t.Fatal(err)
	}
}
