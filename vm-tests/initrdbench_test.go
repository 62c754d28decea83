package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/initramfs"
)

// unpackRuns is how many times each image is booted; the fastest run
// counts. Under -icount two boots in one run agreed to 10 µs (gzip:
// 432.120 ms, then 432.113 ms); two runs on a loaded host differed by 5%
// (432 and 454 ms) with the same ratios, so one boot is enough.
const unpackRuns = 1

// reUnpack matches the kernel's printk-timed lines around the initramfs
// unpacking (init/initramfs.c: do_populate_rootfs, then free_initrd_mem),
// a failed unpack, and the first line of sealroot-init.
var reUnpack = regexp.MustCompile(`^\[\s*([0-9.]+)\] (Trying to unpack rootfs image as initramfs|Unpacking initramfs|Freeing initrd memory|Initramfs unpacking failed)|^sealroot: `)

// TestInitramfsUnpack builds the default sealroot initramfs with each
// compression the builder offers and boots Debian's kernel with it in QEMU
// (TCG), reading the kernel's own timestamps: from "Trying to unpack
// rootfs image as initramfs" to "Freeing initrd memory" the kernel
// decompresses the image and writes every file into the rootfs
// (initramfs_async=0 keeps other initcalls out of that interval). The
// guest clock counts instructions (-icount shift=0: one instruction is one
// nanosecond, a 1 GIPS CPU), so the figures measure the guest's work and
// not the load of a shared host, where wall-clock TCG runs of the same
// image varied from 1.3 s to 9 s. Each boot must go on to run the image's
// /init, whose first line ends it. It prints the sizes and unpack times
// with their ratios against gzip. It is a benchmark, not a check: it runs
// only with SEALROOT_BENCH=1 (`make bench-initramfs`).
func TestInitramfsUnpack(t *testing.T) {
	SkipUnlessEnabled(t)
	if os.Getenv("SEALROOT_BENCH") != "1" {
		t.Skip("benchmark: run with SEALROOT_BENCH=1 (make bench-initramfs)")
	}
	RequireTools(t, QEMU)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	k, err := initramfs.FetchKernel(ctx, CacheDir(t))
	if err != nil {
		t.Fatalf("fetch kernel: %v", err)
	}
	dir := t.TempDir()
	opts := initramfs.Options{
		AgentBinary:   filepath.Join(dir, "sealroot-agent"),
		InitBinary:    filepath.Join(dir, "sealroot-init"),
		ModulesRoot:   k.ModulesRoot,
		KernelVersion: k.Version,
	}
	if err := initramfs.BuildAgent(ctx, "github.com/sealroot/sealroot/cmd/sealroot-agent", opts.AgentBinary); err != nil {
		t.Fatal(err)
	}
	if err := initramfs.BuildAgent(ctx, "github.com/sealroot/sealroot/cmd/sealroot-init", opts.InitBinary); err != nil {
		t.Fatal(err)
	}
	comps := []string{"gzip", "zstd", "xz"}
	size := map[string]int64{}
	image := map[string]string{}
	for _, c := range comps {
		opts.Compression = c
		image[c] = filepath.Join(dir, "initramfs."+c)
		size[c] = buildImage(ctx, t, opts, image[c])
	}
	best := map[string]time.Duration{}
	for run := 0; run < unpackRuns; run++ {
		for _, c := range comps { // interleaved: host load hits all alike
			d, err := bootUnpack(ctx, k.VMLinuz, image[c])
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			t.Logf("%s run %d: unpack %v", c, run+1, d)
			if b, ok := best[c]; !ok || d < b {
				best[c] = d
			}
		}
	}
	var last []string
	for _, c := range comps {
		fmt.Printf("initramfs %s: %d bytes (%.2f MiB), unpack %.3f s (guest at 1 instruction/ns, fastest of %d)\n",
			c, size[c], float64(size[c])/(1<<20), best[c].Seconds(), unpackRuns)
		last = append(last, fmt.Sprintf("%s=%d", c, size[c]))
	}
	ratio := func(c string) string {
		return strconv.FormatFloat(best[c].Seconds()/best["gzip"].Seconds(), 'f', 2, 64)
	}
	fmt.Printf("initramfs: bytes %s default=%s limit=%d; unpack/gzip zstd=%s xz=%s\n",
		strings.Join(last, " "), defaultCompression(), 6<<20, ratio("zstd"), ratio("xz"))
}

// defaultCompression names the builder's default compression.
func defaultCompression() string {
	return initramfs.DefaultCompression
}

func buildImage(ctx context.Context, t *testing.T, opts initramfs.Options, out string) int64 {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := initramfs.Build(ctx, opts, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("build %s initramfs: %v", opts.Compression, err)
	}
	return res.Bytes
}

// bootUnpack boots kernel with initrd until /init prints its first line
// and returns the kernel's unpack time.
func bootUnpack(ctx context.Context, kernel, initrd string) (time.Duration, error) {
	// Counting instructions makes TCG slower: a boot to /init took about
	// three minutes of wall time on a loaded 2-core host.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, QEMU, "-accel", "tcg", "-icount", "shift=0,sleep=off", "-cpu", "max", "-m", "512",
		"-nodefaults", "-nographic", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 printk.time=1 initramfs_async=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var start, end float64
	s := bufio.NewScanner(out)
	for s.Scan() {
		m := reUnpack.FindStringSubmatch(strings.TrimRight(s.Text(), "\r"))
		switch {
		case m == nil:
		case m[2] == "Initramfs unpacking failed":
			return 0, fmt.Errorf("kernel: %s", s.Text())
		case m[2] == "Freeing initrd memory":
			end, _ = strconv.ParseFloat(m[1], 64)
		case m[2] != "":
			start, _ = strconv.ParseFloat(m[1], 64)
		case start == 0 || end == 0:
			return 0, fmt.Errorf("/init ran but the unpack lines were missing")
		default: // the first line of /init
			return time.Duration((end - start) * float64(time.Second)), nil
		}
	}
	return 0, fmt.Errorf("console ended before /init printed (scan: %v)", s.Err())
}
