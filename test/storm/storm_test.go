package storm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/wire"
)

// stormCounts parses SEALROOT_STORM ("50,200,1000").
func stormCounts(t *testing.T) []int {
	v := os.Getenv("SEALROOT_STORM")
	if v == "" {
		t.Skip("SEALROOT_STORM not set (e.g. SEALROOT_STORM=50,200,1000; make bench-storm)")
	}
	var ns []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 25000 {
			t.Fatalf("SEALROOT_STORM %q: want machine counts from 1 to 25000", v)
		}
		ns = append(ns, n)
	}
	return ns
}

// TestStorm powers on each count of machines at once against one
// `sealroot serve` (its default limits) and prints, per count, the time
// until every machine is ready, each phase's p50/p99, failures, retries,
// the server's memory and CPU per machine, and the bytes served against
// the plain veth throughput measured in the same run. Machines are
// enrolled and approved beforehand; every count reuses the first machines.
func TestStorm(t *testing.T) {
	counts := stormCounts(t)
	mode, err := stormDHCP()
	if err != nil {
		t.Fatal(err)
	}
	kind, err := stormRootKind()
	if err != nil {
		t.Fatal(err)
	}
	netnstest.RequireRoot(t)
	most := slices.Max(counts)
	tp := newTopo(t, most, mode)
	d := startDaemon(t, tp, kind, nil)
	roots, err := pki.CAPool(d.ca)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Now()
	agents, err := loadgen.NewAgents(ctx, rand.Reader, most, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	waitServing(t, tp)
	rootData, err := d.importRoot(ctx, t)
	if err != nil {
		t.Fatal(err)
	}
	machines := make([]*machine, most)
	for i := range machines {
		if machines[i], err = newMachine(tp.nsOf(i), tp.linkOf(i), mode, i, machineAddr(i), agents[i], roots); err != nil {
			t.Fatal(err)
		}
		defer machines[i].close()
		machines[i].rootKind, machines[i].rootData = kind, rootData
	}
	if mode == modeFull {
		// Full DHCP: enrolled from their namespace's own address, so that
		// the storm's DHCP is a room's first: every address fresh (and
		// probed); counts after the first reuse the first machines' leases.
		for i, m := range machines {
			if err := m.bind(tp.probeAddr(i / perNS)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := enroll(ctx, d.admin(), machines); err != nil {
		t.Fatal(err)
	}
	if mode == modeFull {
		for _, m := range machines {
			m.unbind()
			m.addr = netip.Addr{}
		}
	}
	fmt.Printf("storm setup: %d machines (software TPMs) created, enrolled and approved in %.1fs; %d per namespace; %s\n",
		most, time.Since(t0).Seconds(), perNS, addressing(tp))
	for _, name := range []string{ipxeName, kernelName, initrdName} {
		fmt.Printf("storm artifact %s: %d bytes from %s\n", name, d.sizes[name], d.srcs[name])
	}
	idleCPU0, _, _ := d.usage()
	time.Sleep(idleWindow)
	idleCPU1, idleRSS, _ := d.usage()
	fmt.Printf("storm idle server (enrolled, before the storms): rss %.0f MiB, cpu %.0fms in %s (%.1f%% of a core)\n",
		float64(idleRSS)/(1<<20), ms(idleCPU1-idleCPU0), idleWindow, 100*(idleCPU1-idleCPU0).Seconds()/idleWindow.Seconds())
	for _, n := range counts {
		runStorm(t, d, tp, machines[:n])
	}
}

// addressing says where the machines' addresses come from.
func addressing(tp *topo) string {
	switch tp.mode {
	case modeFull:
		return fmt.Sprintf("addresses from the server's full DHCP (pool of %d, %s-%s, ARP probe, stored leases)", tp.size, poolStart, poolEnd(tp.size))
	case modeProxy:
		return "fixed addresses, boot files from the server's ProxyDHCP (the default dhcp_mode)"
	}
	return "fixed addresses (no DHCP)"
}

// idleWindow is how long the idle server is watched before the storms.
const idleWindow = 5 * time.Second

// waitServing waits until the boot HTTP server answers in tp.
func waitServing(t *testing.T, tp *topo) {
	t.Helper()
	m := &machine{addr: tp.probeAddr(0), ns: tp.nsOf(0)}
	m.http = &nethttp.Client{Transport: &nethttp.Transport{DialContext: m.dialTCP}}
	defer m.http.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := m.get(ctx, fmt.Sprintf("http://%s/boot.ipxe?arch=bios", netip.AddrPortFrom(serverIP, httpPort)))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealroot serve not serving after 2 minutes: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// enroll makes every machine known (its first attestation leaves it
// pending) and approves it over the admin API, 16 at a time.
func enroll(ctx context.Context, admin *client.Client, machines []*machine) error {
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, m := range machines {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := enrollOne(ctx, admin, m)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func enrollOne(ctx context.Context, admin *client.Client, m *machine) error {
	for {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := m.client.AttestOnce(actx)
		cancel()
		var pending *agentattest.PendingError
		var busy *agentattest.BusyError
		switch {
		case errors.As(err, &busy):
			time.Sleep(busy.RetryAfter)
			continue
		case !errors.As(err, &pending):
			return fmt.Errorf("enroll %s: first attestation = %v, want pending", m.addr, err)
		}
		root := wire.RootPlan{Kind: m.rootKind, Params: map[string]string{wire.ImageParam: rootImage}}
		if _, err := admin.SetRoot(ctx, pending.MachineID, root); err != nil {
			return fmt.Errorf("set root of %s: %w", pending.MachineID, err)
		}
		if _, err := admin.Approve(ctx, pending.MachineID, api.ApproveOptions{}); err != nil {
			return fmt.Errorf("approve %s: %w", pending.MachineID, err)
		}
		return nil
	}
}

// stormTimeout bounds one storm: SEALROOT_STORM_TIMEOUT (a Go duration),
// default 15m. Machines not ready by then count as failures.
func stormTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SEALROOT_STORM_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 15 * time.Minute
}

func runStorm(t *testing.T, d *daemon, tp *topo, machines []*machine) {
	n := len(machines)
	cpu0, _, _ := d.usage()
	child0 := childrenCPU(d.cmd.Process.Pid)
	sim0 := processCPU(os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), stormTimeout())
	defer cancel()
	results := make([]bootResult, n)
	var peakRSS int64
	sampled := make(chan struct{})
	sampleCtx, stopSampling := context.WithCancel(ctx)
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			_, rss, _ := d.usage()
			peakRSS = max(peakRSS, rss)
			select {
			case <-sampleCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for i, m := range machines {
		wg.Go(func() { results[i] = m.boot(ctx, start) })
	}
	wg.Wait()
	wall := time.Since(start)
	stopSampling()
	<-sampled
	cpu1, rss, _ := d.usage()
	child := childrenCPU(d.cmd.Process.Pid) - child0
	sim := processCPU(os.Getpid()) - sim0
	veth := vethThroughput(t, tp)
	printStorm(os.Stdout, machines[0].rootKind, results, stormUsage{
		wall: wall, server: cpu1 - cpu0, ganesha: child, simulator: sim, cores: runtime.NumCPU(),
		rss: rss, peakRSS: peakRSS, veth: veth,
	})
}

// stormUsage is what one storm cost the host: its wall time, the CPU of
// the server, of the server's nfs-ganesha and of this process (the
// simulated machines: clients, software TPMs, tunnels), and the plain
// veth throughput measured after it.
type stormUsage struct {
	wall, server, ganesha, simulator time.Duration
	cores                            int
	rss, peakRSS                     int64
	veth                             float64 // bytes per second
}

// cpuFloor is the shortest wall the storm's CPU allows on the host's
// cores: the server's, nfs-ganesha's and the simulated machines' CPU
// spread over every core (on real hardware the machines' share runs on
// the machines).
func (u stormUsage) cpuFloor() time.Duration {
	return (u.server + u.ganesha + u.simulator) / time.Duration(max(1, u.cores))
}

// vethThroughput measures plain TCP from the server's namespace to the
// client namespaces (one stream to each, up to 4) for 3 seconds, in
// bytes per second: what the links carry with no sealroot in the way.
func vethThroughput(t *testing.T, tp *topo) float64 {
	var ln net.Listener
	err := tp.server.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(serverIP, 9).String())
		return err
	})
	if err != nil {
		t.Fatalf("veth throughput: %v", err)
	}
	defer ln.Close()
	const dur = 3 * time.Second
	streams := min(4, len(tp.clients))
	var senders sync.WaitGroup
	senders.Go(func() {
		chunk := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed once the readers are done
			}
			senders.Go(func() {
				defer c.Close()
				c.SetWriteDeadline(time.Now().Add(dur + time.Second))
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			})
		}
	})
	var total int64
	var mu sync.Mutex
	var readers sync.WaitGroup
	start := time.Now()
	for k := range streams {
		readers.Go(func() {
			var c net.Conn
			err := tp.clients[k].Do(func() (err error) {
				c, err = net.Dial("tcp", netip.AddrPortFrom(serverIP, 9).String())
				return err
			})
			if err != nil {
				t.Errorf("veth throughput: dial: %v", err)
				return
			}
			defer c.Close()
			c.SetReadDeadline(start.Add(dur))
			n, _ := io.Copy(io.Discard, c)
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	readers.Wait()
	ln.Close()
	senders.Wait()
	return float64(total) / dur.Seconds()
}

func printStorm(w io.Writer, kind string, results []bootResult, u stormUsage) {
	wall, cpu, veth, rss, peakRSS := u.wall, u.server, u.veth, u.rss, u.peakRSS
	n := len(results)
	var ready, failures, tftpResends, httpRetries, attRetries, wgInits, wgResent, wgCookies, dhcpResends, dhcpNAKs, rootRetries, rootRecoveries int
	var bytes, rootBytes, refetched int64
	var errs []string
	for _, r := range results {
		bytes += r.bytes
		rootBytes += r.rootBytes
		refetched += r.refetched
		httpRetries += r.httpRetries
		tftpResends += r.tftpResends
		wgInits += r.wgInits
		wgResent += max(0, r.wgInits-1)
		wgCookies += r.wgCookies
		attRetries += r.attRetries
		dhcpResends += r.dhcpResends
		dhcpNAKs += r.dhcpNAKs
		rootRetries += r.rootRetries
		rootRecoveries += r.rootRecoveries
		if r.err != nil {
			failures++
			if len(errs) < 3 {
				errs = append(errs, r.err.Error())
			}
			continue
		}
		ready++
	}
	how := "iSCSI root logged in and read"
	if kind == rootKindNFS {
		how = "NFS root mounted and read"
	}
	fmt.Fprintf(w, "storm N=%d: %d of %d root-ready (attested, tunnel up, %s) in %.1fs; failures %d; retries: dhcp resends %d (naks %d), tftp resends %d, downloads %d, attestations %d, wireguard initiations %d, %s requests %d\n",
		n, ready, n, how, wall.Seconds(), failures, dhcpResends, dhcpNAKs, tftpResends, httpRetries, attRetries, wgResent, kind, rootRetries)
	if kind == rootKindNFS {
		fmt.Fprintf(w, "  nfs: %d sessions recovered after the server lost them (a lease expired while the machine's requests waited), as the kernel client recovers\n", rootRecoveries)
	}
	fmt.Fprintf(w, "  wireguard: %d handshake initiations for %d machines (%d retransmitted after 5s without answer), %d cookie replies (server under load)\n",
		wgInits, n, wgResent, wgCookies)
	for p := range numPhases {
		var ds []time.Duration
		ran := false
		for _, r := range results {
			if r.err == nil {
				ds = append(ds, r.phase[p])
				ran = ran || r.phase[p] > 0
			}
		}
		if !ran && isDHCPPhase(p) {
			continue // fixed addresses
		}
		p50, p99 := percentiles(ds)
		fmt.Fprintf(w, "  %-12s p50 %8.1fms  p99 %8.1fms\n", phaseName(p, kind), ms(p50), ms(p99))
	}
	var readies []time.Duration
	for _, r := range results {
		if r.err == nil {
			readies = append(readies, r.ready)
		}
	}
	p50, p99 := percentiles(readies)
	fmt.Fprintf(w, "  %-12s p50 %8.1fms  p99 %8.1fms  (from power-on)\n", "ready", ms(p50), ms(p99))
	fmt.Fprintf(w, "  server: rss %.0f MiB (peak sampled %.0f MiB), cpu %.1fms per machine (%.1fs in all)\n",
		float64(rss)/(1<<20), float64(peakRSS)/(1<<20), ms(cpu)/float64(n), cpu.Seconds())
	need := float64(bytes+rootBytes) / veth
	ratio := wall.Seconds() / need
	fmt.Fprintf(w, "  bytes served %.1f MB (TFTP+HTTP %.1f MB, of which kernels fetched again %.1f MB; %s root reads %.1f MB), plain veth TCP %.0f MB/s in this run: %.2fs for the bytes alone\n",
		float64(bytes+rootBytes)/1e6, float64(bytes)/1e6, float64(refetched)/1e6, kind, float64(rootBytes)/1e6, veth/1e6, need)
	fmt.Fprintf(w, "  simulator (this process: clients, software TPMs, tunnels): cpu %.1fs, %.0f%% of the %d cores' wall\n",
		u.simulator.Seconds(), 100*u.simulator.Seconds()/(float64(u.cores)*wall.Seconds()), u.cores)
	if kind == rootKindNFS {
		fmt.Fprintf(w, "  nfs-ganesha (the server's child, not in its cpu above): cpu %.1fms per machine (%.1fs in all)\n",
			ms(u.ganesha)/float64(n), u.ganesha.Seconds())
	}
	// limit_ratio is the figure: the wall against the bytes alone.
	// On one host the CPU of the server and of every simulated machine
	// also bounds the wall from below; this line says how close the storm
	// came to whichever bound is higher.
	floor := max(u.cpuFloor().Seconds(), need)
	fmt.Fprintf(w, "  cpu floor: %.1fs of CPU on %d cores = %.2fs; wall over max(bytes alone, cpu floor) = %.2f\n",
		(u.server + u.ganesha + u.simulator).Seconds(), u.cores, u.cpuFloor().Seconds(), wall.Seconds()/floor)
	for _, e := range errs {
		fmt.Fprintf(w, "  failure: %s\n", e)
	}
	fmt.Fprintf(w, "storm: machines=%d ready=%d failures=%d wall=%.1fs limit_ratio=%.2f\n", n, ready, failures, wall.Seconds(), ratio)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return at(0.50), at(0.99)
}

func isDHCPPhase(p int) bool { return p == phaseDHCPPXE || p == phaseDHCPIPXE || p == phaseDHCPAgent }
