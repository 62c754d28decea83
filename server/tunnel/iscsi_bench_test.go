package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/test/netnstest"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/hashicorp/go-hclog"
)

const benchIQN = "iqn.2026-01.org.sealroot:bench"

// iscsiPerfCases are issue 4's iscsi-perf loads: queue depth 32,
// sequential 32 KiB and random 4 KiB reads, 5 seconds each.
var iscsiPerfCases = []struct {
	name string
	args []string
}{
	{"seq_32k", []string{"-m", "32", "-b", "64", "-t", "5"}},
	{"rand_4k", []string{"-m", "32", "-b", "8", "-r", "-t", "5"}},
}

// BenchmarkISCSIThroughTunnel serves one sparse file with sealroot's
// iSCSI target on two portals of the server namespace, the tunnel
// address (TUN server end, Tunnel.Listen) and the plain LAN address of
// the veth, and runs libiscsi's iscsi-perf from machine A's namespace,
// whose wireguard-go device is a peer configured by agent/tunnel, once to
// each portal. It prints one line per load and a last line
// "ratio: tunnel/plain=<x>" (sequential MB/s). Run with -benchtime=1x.
func BenchmarkISCSIThroughTunnel(b *testing.B) {
	tool := needPerf(b)
	l := newLab(b, true)
	a := newClient(b, l.m["a"], "srtwg-a")
	plan, err := l.tun.Add(context.Background(), "machine-a", a.pub())
	if err != nil {
		b.Fatal(err)
	}
	a.configure(b, plan)
	plainTo, tunTo := serveISCSI(b, l)
	for b.Loop() {
		var seqRatio float64
		for _, pc := range iscsiPerfCases {
			plain := runPerf(b, l.m["a"], tool, pc.args, plainTo)
			tunnel := runPerf(b, l.m["a"], tool, pc.args, tunTo)
			fmt.Printf("iscsi %s: plain %.0f MB/s %.0f IOPS, tunnel %.0f MB/s %.0f IOPS\n",
				pc.name, plain.mbs, plain.iops, tunnel.mbs, tunnel.iops)
			b.ReportMetric(plain.mbs, pc.name+"-plain-MB/s")
			b.ReportMetric(tunnel.mbs, pc.name+"-tunnel-MB/s")
			if pc.name == "seq_32k" {
				seqRatio = tunnel.mbs / plain.mbs
			}
		}
		b.ReportMetric(seqRatio, "tunnel/plain")
		fmt.Printf("ratio: tunnel/plain=%.3f\n", seqRatio)
	}
}

// needPerf finds iscsi-perf; missing, it skips (fails when CI=true).
func needPerf(b *testing.B) string {
	return testenv.LookTool(b, "iscsi-perf")
}

// serveISCSI serves one 256 MiB sparse file as target benchIQN on the
// plain LAN portal and the tunnel portal of the server namespace, both
// port 3260, until the benchmark ends.
func serveISCSI(b *testing.B, l *lab) (plain, tunnel netip.AddrPort) {
	path := filepath.Join(b.TempDir(), "lun.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(path, 256<<20); err != nil {
		b.Fatal(err)
	}
	store, err := iscsi.OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	srv := &iscsi.Server{Logger: testenv.Logger(b, "", hclog.Debug).Named("iscsi")}
	if err := srv.AddTarget(&iscsi.Target{IQN: benchIQN, LUN: store}); err != nil {
		b.Fatal(err)
	}
	plain = netip.AddrPortFrom(lanServer.Addr(), storagePort)
	tunnel = netip.AddrPortFrom(l.tun.ServerAddr(), storagePort)
	var plainLn, tunLn net.Listener
	err = l.s.Do(func() (err error) {
		if plainLn, err = net.Listen("tcp4", plain.String()); err != nil {
			return err
		}
		tunLn, err = l.tun.Listen("tcp", storagePort)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ctx, plainLn) }()
	go func() { done <- srv.Serve(ctx, tunLn) }()
	b.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				b.Errorf("Serve: %v", err)
			}
		}
	})
	return plain, tunnel
}

type perfResult struct{ mbs, iops float64 }

// runPerf runs iscsi-perf with args in ns against the target at portal.
func runPerf(b *testing.B, ns *netnstest.NS, tool string, args []string, portal netip.AddrPort) perfResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "iscsi://" + portal.String() + "/" + benchIQN + "/0"
	out, _ := ns.Command(ctx, tool, append(args, url)...).CombinedOutput()
	r := parseIscsiPerf(string(out))
	if r.iops == 0 {
		b.Fatalf("iscsi-perf %v %s reported nothing:\n%s", args, url, out)
	}
	return r
}

// parseIscsiPerf reads the last "iops average N (M MB/s)" iscsi-perf
// prints.
func parseIscsiPerf(out string) perfResult {
	var r perfResult
	for _, m := range perfLine.FindAllStringSubmatch(out, -1) {
		r.iops, _ = strconv.ParseFloat(m[1], 64)
		r.mbs, _ = strconv.ParseFloat(m[2], 64)
	}
	return r
}

var perfLine = regexp.MustCompile(`iops average (\d+) \((\d+) MB/s\)`)
