package vmtest

import (
	"context"
	"testing"
	"time"
)

// TestPerUserNFSRootFollowsUser is TestPerUserRootFollowsUser for a group
// whose per-user roots are NFS overlays, in two boots: Alice logs in on
// machine 1 of the group "desks", her fresh root gets a marker and
// machine 1 powers off (no clean unmount). Machine 2 of the group asks
// for a login meanwhile: Alice is refused while machine 1 holds her root
// (its tunnel peer has handshaken lately); once the server sees machine
// 1's tunnel fall silent it frees her root without an operator, and her
// next login on the same prompt of machine 2 finds her marker. It keeps
// the default limits.let_go_after (3 minutes), so that the suite proves
// what a site gets without options; the iSCSI variant runs with 20 s.
func TestPerUserNFSRootFollowsUser(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4", "ganesha.nfsd")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tpm1, tpm2 := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpm1, tpm2}, Extra: tunnelNFSConfig})
	t.Cleanup(func() { stopAndUnmount(t, sr) })
	if _, err := sr.CLI(ctx, "image", "import", "testroot", BusyboxRootTree(t, counterInit)); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLIStdin(ctx, vmAlicePW+"\n", "user", "add", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, "group", "set-root", "desks", "--kind", "nfs", "--image", "testroot", "--per-user"); err != nil {
		t.Fatal(err)
	}
	vm1 := newGroupLoginMachine(ctx, t, lab, sr, "vm-nfs-desk-1", "desks", tpm1)
	t.Run("alice_on_machine_1", func(t *testing.T) {
		defer noPasswordShown(t, vm1)
		typeLogin(t, vm1, "alice", vmAlicePW)
		expectRoot(ctx, t, vm1, `root: marker=none$`) // and powers off
	})
	vm2 := newGroupLoginMachine(ctx, t, lab, sr, "vm-nfs-desk-2", "desks", tpm2)
	defer noPasswordShown(t, vm2)
	t.Run("alice_refused_while_machine_1_holds_her_root", func(t *testing.T) {
		typeLogin(t, vm2, "alice", vmAlicePW)
		expectBoot(ctx, t, vm2, `login refused: the root of user alice is in use on machine vm-nfs-desk-1 `)
	})
	t.Run("alice_follows_to_machine_2", func(t *testing.T) {
		waitUserRootFreed(ctx, t, sr, "alice", 8*time.Minute)
		loginAccepted(ctx, t, vm2, "alice", vmAlicePW)
		expectRoot(ctx, t, vm2, `root: marker=1$`)
	})
}

// newGroupLoginMachine boots a new machine with console input: pending,
// put in group and approved as name; it returns once the agent asks for
// a login.
func newGroupLoginMachine(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, name, group string, tp *TPM) *VM {
	t.Helper()
	vm := startLoginPXE(ctx, t, lab, name, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	for _, args := range [][]string{{"machine", "set-group", id, group}, approveArgs(id, name, BIOS)} {
		if _, err := sr.CLI(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	expectBoot(ctx, t, vm, rePerUser)
	return vm
}

// loginAccepted logs user in on vm's login prompt. An agent gives up an
// attempt at attestation after two minutes (agent/attest's
// defaultAttemptTimeout), a prompt left waiting with it, and asks again:
// a login that meets the end of an attempt is typed again on the next
// prompt.
func loginAccepted(ctx context.Context, t *testing.T, vm *VM, user, pw string) {
	t.Helper()
	for try := 1; ; try++ {
		typeLogin(t, vm, user, pw)
		m := expectBoot(ctx, t, vm, `^(?:(login accepted)$|sealroot: attestation server \S+: attestation failed: login: )`)
		if m[1] != "" {
			return
		}
		if try == 3 {
			t.Fatalf("login of %s met the end of an attempt %d times", user, try)
		}
		expectBoot(ctx, t, vm, rePerUser)
	}
}
