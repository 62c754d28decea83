package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/metrics"
)

// distroMetricsAddr is where TestDistroRoot's server serves its metrics:
// loopback inside the lab namespace, which the test reaches through
// [Lab.Do].
const distroMetricsAddr = "127.0.0.1:9477"

// iscsiCounts are the iSCSI target's counters in one scrape of the
// server's metrics endpoint, over both portals: bytes read and written
// by initiators (sealroot_iscsi_bytes_total), READ and WRITE commands and
// the cumulative count of READs by size bucket
// (sealroot_iscsi_command_bytes).
type iscsiCounts struct {
	ReadBytes, WrittenBytes float64
	Reads, Writes           float64
	ReadsUpTo               map[float64]float64 // le -> READs of at most le bytes
}

// sub returns c - base: what happened between two scrapes.
func (c iscsiCounts) sub(base iscsiCounts) iscsiCounts {
	d := iscsiCounts{ReadBytes: c.ReadBytes - base.ReadBytes, WrittenBytes: c.WrittenBytes - base.WrittenBytes,
		Reads: c.Reads - base.Reads, Writes: c.Writes - base.Writes, ReadsUpTo: map[float64]float64{}}
	for le, n := range c.ReadsUpTo {
		d.ReadsUpTo[le] = n - base.ReadsUpTo[le]
	}
	return d
}

// String is the figures the storm needs: bytes and READs, bytes and
// WRITEs, and the mean READ.
func (c iscsiCounts) String() string {
	mean := 0.0
	if c.Reads > 0 {
		mean = c.ReadBytes / c.Reads
	}
	return fmt.Sprintf("bytes=%.0f (%.1f MiB) reads=%.0f mean_read=%.1fKiB written=%.0f (%.1f MiB) writes=%.0f",
		c.ReadBytes, c.ReadBytes/(1<<20), c.Reads, mean/1024, c.WrittenBytes, c.WrittenBytes/(1<<20), c.Writes)
}

// Sizes is the READs by size bucket, not cumulative: "<=4KiB:12 <=8KiB:3
// ... >1MiB:0".
func (c iscsiCounts) Sizes() string {
	var b strings.Builder
	prevLe, prevN := 0.0, 0.0
	for _, le := range slices.Sorted(maps.Keys(c.ReadsUpTo)) {
		n := c.ReadsUpTo[le]
		if math.IsInf(le, 1) {
			fmt.Fprintf(&b, " >%s:%.0f", kib(prevLe), n-prevN)
		} else {
			fmt.Fprintf(&b, " <=%s:%.0f", kib(le), n-prevN)
		}
		prevLe, prevN = le, n
	}
	return strings.TrimSpace(b.String())
}

func kib(b float64) string {
	if b >= 1<<20 {
		return fmt.Sprintf("%.0fMiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0fKiB", b/1024)
}

// scrapeISCSI reads the iSCSI counters from the metrics endpoint at addr
// inside lab's namespace.
func scrapeISCSI(ctx context.Context, lab *Lab, addr string) (iscsiCounts, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := lab.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return iscsiCounts{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return iscsiCounts{}, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return iscsiCounts{}, fmt.Errorf("scrape metrics: %s", resp.Status)
	}
	return parseISCSICounts(resp.Body)
}

var reLabel = regexp.MustCompile(`(\w+)="([^"]*)"`)

// parseISCSICounts reads iscsiCounts from a scrape in the Prometheus
// text format.
func parseISCSICounts(r io.Reader) (iscsiCounts, error) {
	c := iscsiCounts{ReadsUpTo: map[float64]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "sealroot_iscsi_") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return c, fmt.Errorf("metrics line %q: %w", line, err)
		}
		name, labelText, _ := strings.Cut(series, "{")
		labels := map[string]string{}
		for _, m := range reLabel.FindAllStringSubmatch(labelText, -1) {
			labels[m[1]] = m[2]
		}
		switch {
		case name == "sealroot_iscsi_bytes_total" && labels["direction"] == "read":
			c.ReadBytes += v
			found = true
		case name == "sealroot_iscsi_bytes_total" && labels["direction"] == "written":
			c.WrittenBytes += v
		case name == "sealroot_iscsi_command_bytes_count" && labels["op"] == "read":
			c.Reads += v
		case name == "sealroot_iscsi_command_bytes_count" && labels["op"] == "write":
			c.Writes += v
		case name == "sealroot_iscsi_command_bytes_bucket" && labels["op"] == "read":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil {
				return c, fmt.Errorf("metrics line %q: %w", line, err)
			}
			c.ReadsUpTo[le] += v
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read metrics: %w", err)
	}
	if !found {
		return c, fmt.Errorf("metrics: no sealroot_iscsi_bytes_total (is the iSCSI target on?)")
	}
	return c, nil
}

// guestDiskStat is one line of the guest's /sys/block/<disk>/stat, as
// the check script prints it: the block layer's requests after merging,
// which are the SCSI commands the target sees.
type guestDiskStat struct {
	Reads, SectorsRead, Writes, SectorsWritten uint64
}

// parseGuestDiskStat parses the fields of /sys/block/<disk>/stat
// (Documentation/block/stat.rst: read I/Os, read merges, read sectors,
// read ticks, write I/Os, write merges, write sectors, ...).
func parseGuestDiskStat(fields string) (guestDiskStat, error) {
	f := strings.Fields(fields)
	if len(f) < 7 {
		return guestDiskStat{}, fmt.Errorf("disk stat %q: %d fields, want at least 7", fields, len(f))
	}
	var n [7]uint64
	for i := range n {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return guestDiskStat{}, fmt.Errorf("disk stat %q: %w", fields, err)
		}
		n[i] = v
	}
	return guestDiskStat{Reads: n[0], SectorsRead: n[2], Writes: n[4], SectorsWritten: n[6]}, nil
}

func (s guestDiskStat) String() string {
	return fmt.Sprintf("bytes=%d (%.1f MiB) reads=%d written=%d (%.1f MiB) writes=%d", s.SectorsRead*512,
		float64(s.SectorsRead*512)/(1<<20), s.Reads, s.SectorsWritten*512, float64(s.SectorsWritten*512)/(1<<20), s.Writes)
}

// The parser reads the figures from the server's own exposition of its
// metrics (no VM: runs in every `go test ./vm-tests`).
func TestParseISCSICounts(t *testing.T) {
	m := metrics.New(metrics.Sources{ISCSI: func() metrics.ISCSIStats {
		return metrics.ISCSIStats{Sessions: 1, ReadBytes: 3 << 20, WrittenBytes: 8192, Commands: 9}
	}})
	for _, size := range []int{4096, 4096, 128 << 10, 2 << 20} {
		m.ObserveISCSICommand("tunnel", "read", size, time.Millisecond)
	}
	m.ObserveISCSICommand("plain", "read", 8192, time.Millisecond)
	m.ObserveISCSICommand("tunnel", "write", 8192, time.Millisecond)
	m.ObserveISCSICommand("tunnel", "sync", 0, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	c, err := parseISCSICounts(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReadBytes != 3<<20 || c.WrittenBytes != 8192 || c.Reads != 5 || c.Writes != 1 {
		t.Errorf("counts = %s, want 3 MiB read in 5 READs, 8 KiB written in 1 WRITE", c)
	}
	const want = "<=4KiB:2 <=8KiB:1 <=16KiB:0 <=32KiB:0 <=64KiB:0 <=128KiB:1 <=256KiB:0 <=512KiB:0 <=1MiB:0 >1MiB:1"
	if got := c.sub(iscsiCounts{}).Sizes(); got != want {
		t.Errorf("sizes = %q, want %q", got, want)
	}
}

// nfsCounts are an NFS mount's counts in the guest's
// /proc/self/mountstats (the kernel's NFS client): the payload of READs
// and WRITEs (the "bytes:" line's server read and write bytes), the READ
// and WRITE RPCs, and over every RPC the mount sent, how many and the
// bytes of the requests and of the server's replies (RPC headers
// included).
type nfsCounts struct {
	ReadBytes, WrittenBytes uint64
	Reads, Writes           uint64
	RPCs, SentBytes         uint64
	ReplyBytes              uint64
}

// add takes one line of the mount's statistics: "bytes: <8 numbers>" or
// "<OP>: ops trans timeouts bytes_sent bytes_recv ..."
// (Documentation of the format: the kernel's fs/nfs/super.c
// nfs_show_stats and net/sunrpc/stats.c rpc_clnt_show_stats).
func (c *nfsCounts) add(line string) error {
	f := strings.Fields(line)
	if len(f) < 6 {
		return fmt.Errorf("nfs stat %q: too few fields", line)
	}
	n := make([]uint64, len(f)-1)
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("nfs stat %q: %w", line, err)
		}
		n[i] = v
	}
	switch op := strings.TrimSuffix(f[0], ":"); op {
	case "bytes":
		if len(n) < 6 {
			return fmt.Errorf("nfs stat %q: too few fields", line)
		}
		c.ReadBytes, c.WrittenBytes = n[4], n[5]
	default:
		c.RPCs += n[0]
		c.SentBytes += n[3]
		c.ReplyBytes += n[4]
		switch op {
		case "READ":
			c.Reads += n[0]
		case "WRITE":
			c.Writes += n[0]
		}
	}
	return nil
}

func (c nfsCounts) String() string {
	mean := 0.0
	if c.Reads > 0 {
		mean = float64(c.ReadBytes) / float64(c.Reads)
	}
	return fmt.Sprintf("bytes=%d (%.1f MiB) reads=%d mean_read=%.1fKiB written=%d (%.1f MiB) writes=%d rpcs=%d reply_bytes=%d (%.1f MiB)",
		c.ReadBytes, float64(c.ReadBytes)/(1<<20), c.Reads, mean/1024, c.WrittenBytes, float64(c.WrittenBytes)/(1<<20), c.Writes,
		c.RPCs, c.ReplyBytes, float64(c.ReplyBytes)/(1<<20))
}

// The check script's lines of an NFS root's mountstats add up.
func TestNFSCounts(t *testing.T) {
	var c nfsCounts
	for _, l := range []string{
		"bytes: 100 20 0 0 8192 4096 2 1",
		"READ: 2 2 0 240 8400 0 3 4 0",
		"WRITE: 1 1 0 4300 120 0 1 1 0",
		"LOOKUP: 10 10 0 1500 2400 0 5 6 0",
	} {
		if err := c.add(l); err != nil {
			t.Fatal(err)
		}
	}
	want := nfsCounts{ReadBytes: 8192, WrittenBytes: 4096, Reads: 2, Writes: 1, RPCs: 13, SentBytes: 6040, ReplyBytes: 10920}
	if c != want {
		t.Errorf("counts = %+v, want %+v", c, want)
	}
	if err := c.add("READ: x"); err == nil {
		t.Error("a malformed line was taken")
	}
}
