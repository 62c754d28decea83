package vmtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Sizes of the root throughput benchmark: a file of the base image read
// sequentially, and a new file written sequentially and fsynced.
const (
	benchReadMiB  = 64
	benchWriteMiB = 32
	benchRuns     = 3
)

// benchInit is the benchmark root's /sbin/init: each run drops the page
// cache, reads /data from the base, writes and fsyncs /w, and prints the
// uptime before and after each.
var benchInit = fmt.Sprintf(`#!/bin/busybox sh
B=/bin/busybox
$B mountpoint -q /proc || $B mount -t proc proc /proc
up() { $B cut -d' ' -f1 /proc/uptime; }
for i in $($B seq %d); do
  $B sync; echo 3 > /proc/sys/vm/drop_caches
  s=$(up); $B dd if=/data of=/dev/null bs=1M 2>/dev/null; e=$(up); echo "bench: read $s $e"
  s=$(up); $B dd if=/dev/zero of=/w bs=1M count=%d conv=fsync 2>/dev/null; e=$(up); echo "bench: write $s $e"
  $B rm -f /w; $B sync
done
echo "bench: done"
$B poweroff -f
`, benchRuns, benchWriteMiB)

var reBench = regexp.MustCompile(`bench: (read|write) ([0-9.]+) ([0-9.]+)|bench: done`)

// TestRootThroughput measures sequential read and write throughput from
// inside a VM on an iSCSI root and on an NFSv4 root, both over the
// WireGuard tunnel to the same server, and prints them side by side with
// the ratio NFS/iSCSI (the baseline). It is a benchmark, not a check: it
// runs only with SEALROOT_BENCH=1 (`make bench-roots`).
func TestRootThroughput(t *testing.T) {
	SkipUnlessEnabled(t)
	if os.Getenv("SEALROOT_BENCH") != "1" {
		t.Skip("benchmark: run with SEALROOT_BENCH=1 (make bench-roots)")
	}
	RequireTools(t, QEMU, "swtpm", "nsenter", Busybox, "mkfs.ext4", "ganesha.nfsd")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tpmI, tpmN := NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "bench-lab"})
	extra := map[string]any{"tunnel": tunnelNFSConfig["tunnel"], "nfs": map[string]any{}, "iscsi": map[string]any{"port": 3260}}
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpmI, tpmN}, Extra: extra})
	t.Cleanup(func() { stopAndUnmount(t, sr) })
	tree := BusyboxRootTree(t, benchInit)
	data := make([]byte, benchReadMiB<<20)
	r := rand.NewChaCha8([32]byte{'s', 'e', 'a', 'l'})
	r.Read(data)
	if err := os.WriteFile(filepath.Join(tree, "data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.CLI(ctx, "image", "import", "bench", tree); err != nil {
		t.Fatal(err)
	}
	results := map[string]map[string][]float64{}
	for _, c := range []struct {
		kind string
		tp   *TPM
	}{{"iscsi", tpmI}, {"nfs", tpmN}} {
		_, vm := approveWithRoot(ctx, t, lab, sr, "bench-"+c.kind, c.kind, "bench", BIOS, c.tp)
		if m := expectBoot(ctx, t, vm, `^(?:sealroot: (?:boot failed|\[FAILED\]) (.*)|sealroot: \[ok\] root )`); m[1] != "" {
			t.Fatalf("agent failed: %s", m[1])
		}
		results[c.kind] = map[string][]float64{}
		for {
			m := expectBoot(ctx, t, vm, reBench.String())
			if m[1] == "" {
				break
			}
			start, _ := strconv.ParseFloat(m[2], 64)
			end, _ := strconv.ParseFloat(m[3], 64)
			mib := map[string]float64{"read": benchReadMiB, "write": benchWriteMiB}[m[1]]
			results[c.kind][m[1]] = append(results[c.kind][m[1]], mib*1.048576/max(end-start, 0.01))
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		vm.Wait(wctx)
		cancel()
	}
	fmt.Printf("root throughput inside a VM (QEMU TCG, over WireGuard, MB/s, median of %d runs):\n", benchRuns)
	for _, op := range []string{"read", "write"} {
		i, n := median(results["iscsi"][op]), median(results["nfs"][op])
		size := map[string]int{"read": benchReadMiB, "write": benchWriteMiB}[op]
		fmt.Printf("seq %-5s %2d MiB: iscsi=%6.1f nfs=%6.1f  ratio nfs/iscsi=%.2f  (runs iscsi %v, nfs %v)\n",
			op, size, i, n, n/i, round1(results["iscsi"][op]), round1(results["nfs"][op]))
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

func round1(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(int(x*10+0.5)) / 10
	}
	return out
}
