package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/volume"
)

// writerInit is the durability test root's /sbin/init: it counts the
// @sealroot-iscsi keepers that survived switch_root, then writes numbered
// 4 KiB blocks into /blocks and the block number into /marker (replaced
// by rename), syncing after each, and prints "root: wrote N" once block N
// and marker N are on stable storage.
const writerInit = `#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
$B mountpoint -q /sys || $B mount -t sysfs sys /sys
echo "root: keepers=$($B cat /proc/[0-9]*/cmdline 2>/dev/null | $B tr '\0' '\n' | $B grep -c '^@sealroot-iscsi$')"
n=0
[ -f /marker ] && n=$($B cat /marker)
echo "root: resumed at marker $n"
if [ $n != 0 ] && [ -f /iscsi-debug ]; then
  for p in libiscsi/parameters/debug_libiscsi_conn libiscsi/parameters/debug_libiscsi_session \
    iscsi_tcp/parameters/debug_iscsi_tcp scsi_transport_iscsi/parameters/debug_conn \
    scsi_transport_iscsi/parameters/debug_session; do echo 1 > /sys/module/$p; done
fi
while :; do
  n=$((n+1))
  $B printf 'block %d\n' $n | $B dd of=/blocks bs=4096 seek=$n conv=notrunc,sync 2>/dev/null || break
  echo $n > /marker.new || break
  $B mv /marker.new /marker || break
  $B sync || break
  echo "root: wrote $n"
  $B usleep 300000
done
echo "root: write $n failed"
exec $B sleep 100000
`

// keeperRecoveryWait bounds the wait for the keeper after a server
// restart: the kernel's recovery timeout (120 s) plus slack.
const keeperRecoveryWait = 150 * time.Second

var reWrote = regexp.MustCompile(`root: wrote (\d+)`)

// TestISCSIDurability runs a machine whose iSCSI root (production chain:
// PXE, attestation, WireGuard, mutual CHAP) writes and syncs numbered
// blocks in a loop. It cuts the machine's power mid-write: the volume must
// be fsck-clean and hold the last block and marker the machine reported
// synced, and the next boot resumes from that marker. Then it restarts
// `sealroot serve` under the writing machine: the @sealroot-iscsi keeper
// must log in again and the writes go on.
//
// SEALROOT_VM_ISCSI_DEBUG=1 turns on the kernel's iSCSI debug messages in
// the machine's second boot (the one whose server is restarted).
func TestISCSIDurability(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4", "e2fsck", "debugfs", "cp")
	begin := time.Now()
	defer func() { t.Logf("TestISCSIDurability took %s", time.Since(begin).Round(time.Second)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tp := NewTPM(t)
	// Its own namespace name: other VM tests may run at the same time.
	lab := NewLab(t, LabOptions{Name: "sealroot-durable"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tp}, Extra: tunnelISCSIConfig})
	tree := BusyboxRootTree(t, writerInit)
	if os.Getenv("SEALROOT_VM_ISCSI_DEBUG") == "1" {
		if err := os.WriteFile(filepath.Join(tree, "iscsi-debug"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sr.CLI(ctx, "image", "import", "writer", tree); err != nil {
		t.Fatal(err)
	}
	vm := startPXE(ctx, t, lab, "vm-durable", BIOS, tp)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	if _, err := sr.CLI(ctx, "machine", "set-root", id, "--image", "writer", "--kind", "iscsi"); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, approveArgs(id, "vm-durable", BIOS)...); err != nil {
		t.Fatal(err)
	}
	expectWriterRoot(ctx, t, vm, 0)
	first := expectWrote(ctx, t, vm, 3)
	t.Logf("root writes and syncs: marker %d after %s", first, time.Since(begin).Round(time.Second))

	synced := 0
	t.Run("power_cut", func(t *testing.T) {
		expectWrote(ctx, t, vm, lastWrote(t, vm)+2)
		vm.Kill()
		synced = lastWrote(t, vm)
		raw := exportVolume(t, sr, id)
		e2fsck(t, raw)
		got, err := strconv.Atoi(debugfsCat(t, raw, "/marker"))
		if err != nil || got < synced || got > synced+1 {
			t.Fatalf("/marker = %d (%v) after the power cut; the machine had synced marker %d (want %d or %d)", got, err, synced, synced, synced+1)
		}
		blocks := debugfsCat(t, raw, "/blocks")
		for _, n := range []int{1, synced} {
			want := fmt.Sprintf("block %d\n", n)
			if off := n * 4096; len(blocks) < off+len(want) || blocks[off:off+len(want)] != want {
				t.Errorf("/blocks has no synced block %d after the power cut", n)
			}
		}
		t.Logf("power cut after synced marker %d: fsck clean, /marker=%d, blocks 1 and %d present", synced, got, synced)
		synced = got
	})

	vm = startPXE(ctx, t, lab, "vm-durable-2", BIOS, tp)
	expectWriterRoot(ctx, t, vm, synced)
	expectWrote(ctx, t, vm, synced+3)

	t.Run("server_restart", func(t *testing.T) {
		down, err := sr.Restart(ctx, t, lab)
		if err != nil {
			t.Fatal(err)
		}
		atRestart := lastWrote(t, vm)
		t.Logf("sealroot serve restarted in %s; last synced marker before: %d", down.Round(time.Millisecond), atRestart)
		restored := time.Now()
		wctx, cancel := context.WithTimeout(ctx, keeperRecoveryWait)
		defer cancel()
		m, err := vm.Expect(wctx, regexp.MustCompile(`sealroot-iscsi: iSCSI connection restored.*took=(\S+)`))
		if err != nil {
			t.Fatalf("the @sealroot-iscsi keeper did not log in again within %s of the restart (%v); its last lines:\n%s",
				keeperRecoveryWait, err, keeperLines(t, vm))
		}
		t.Logf("keeper logged in again %s after the server was back (its recovery took %s)", time.Since(restored).Round(time.Millisecond), m[1])
		n := expectWroteWithin(wctx, t, vm, atRestart+3)
		t.Logf("writes go on after the restart: marker %d (%d before)", n, atRestart)
	})
}

// expectWriterRoot waits for the tunnel and root stages (an agent failure
// ends the test with the agent's message), then for the root's report of
// the surviving keeper and the marker it resumes from.
func expectWriterRoot(ctx context.Context, t *testing.T, vm *VM, marker int) {
	t.Helper()
	for _, re := range []string{`sealroot: \[ok\] tunnel `, `sealroot: \[ok\] root `} {
		if m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|`+re+`)`); m[1] != "" {
			t.Fatalf("agent failed: %s", m[1])
		}
	}
	if k := expectBoot(ctx, t, vm, `root: keepers=(\d+)`)[1]; k != "1" {
		t.Errorf("%s @sealroot-iscsi keepers alive after switch_root, want 1", k)
	}
	if got := atoi(expectBoot(ctx, t, vm, `root: resumed at marker (\d+)`)[1]); got != marker {
		t.Errorf("root resumed at marker %d, want %d", got, marker)
	}
}

// expectWrote waits (up to bootTimeout) for a "root: wrote N" line with N
// at least min and returns N.
func expectWrote(ctx context.Context, t *testing.T, vm *VM, min int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	return expectWroteWithin(ctx, t, vm, min)
}

func expectWroteWithin(ctx context.Context, t *testing.T, vm *VM, min int) int {
	t.Helper()
	for {
		m, err := vm.Expect(ctx, regexp.MustCompile(`root: (?:wrote|write) (\d+)( failed)?`))
		if err == nil && m[2] != "" {
			err = fmt.Errorf("write %s failed", m[1])
		}
		if err != nil {
			t.Fatalf("no marker %d written: %v (last synced: %d)", min, err, lastWrote(t, vm))
		}
		if n, _ := strconv.Atoi(m[1]); n >= min {
			return n
		}
	}
}

// lastWrote is the highest marker the console has reported synced.
func lastWrote(t *testing.T, vm *VM) int {
	t.Helper()
	b, err := os.ReadFile(vm.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for _, m := range reWrote.FindAllSubmatch(b, -1) {
		last = max(last, atoi(string(m[1])))
	}
	return last
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// keeperLines returns the keeper's console lines (at most the last 20).
func keeperLines(t *testing.T, vm *VM) string {
	b, _ := os.ReadFile(vm.ConsoleLog())
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "sealroot-iscsi") || strings.Contains(l, "connection") || strings.Contains(l, "session") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// exportVolume copies the machine's volume (reflink clone or cow
// overlay) into a raw image through server/volume, from a copy of the
// server's volume directory (opening a volume writes its header).
func exportVolume(t *testing.T, sr *Sealroot, id string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "--sparse=always", filepath.Join(sr.StateDir, "volumes"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy volumes: %v: %s", err, out)
	}
	images, err := image.Open(image.Config{Dir: filepath.Join(sr.StateDir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := volume.New(volume.Config{Dir: filepath.Join(dir, "volumes"), Bases: images})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := mgr.Meta(id)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := mgr.Open(id, meta.Base)
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	raw := filepath.Join(dir, "volume.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := copySparse(f, vol, vol.Size()); err != nil {
		t.Fatal(err)
	}
	t.Logf("volume of %s (%s backend, %d MiB) exported", id, vol.Backend, vol.Size()>>20)
	return raw
}

// copySparse copies size bytes of r to f, leaving zero chunks as holes.
func copySparse(f *os.File, r io.ReaderAt, size int64) error {
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := int(min(int64(len(buf)), size-off))
		if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return fmt.Errorf("read volume at %d: %w", off, err)
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}

// e2fsck replays the journal (as mounting would) and then requires a
// clean forced check.
func e2fsck(t *testing.T, raw string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-E", "journal_only", "-p", raw).CombinedOutput(); err != nil {
		t.Logf("e2fsck journal replay: %v: %s", err, out)
	}
	out, err := exec.Command("e2fsck", "-fn", raw).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn after the power cut: %v:\n%s", err, out)
	}
	t.Logf("e2fsck -fn: %s", bytes.TrimSpace(out))
}
