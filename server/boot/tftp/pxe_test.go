package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pxeClient fetches a file as firmware PXE does (RFC 1350 with the RFC
// 2347/2348/2349 options): a first read request asks only the transfer size
// and is aborted with an ERROR once the OACK names it, then the file is read
// with blksize, one block acknowledged at a time. A request or ACK without
// an answer is sent again after Timeout, up to Retries times (EDK2's PXE:
// PXEBC_MTFTP_TIMEOUT 4 s, PXEBC_MTFTP_RETRIES 6).
type pxeClient struct {
	Blksize int // legacy Intel PXE asks 1456, EDK2 1468
	// Window, when > 1, asks RFC 7440 windowsize (iPXE and most firmware
	// do not).
	Window  int
	Timeout time.Duration
	Retries int
}

// pxeResult is one fetch: the bytes and how many packets were sent again.
type pxeResult struct {
	data    []byte
	tsize   int64
	resends int
}

func (c pxeClient) fetch(ctx context.Context, src netip.Addr, server netip.AddrPort, name string) (pxeResult, error) {
	var r pxeResult
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		return r, err
	}
	defer conn.Close()
	to := net.UDPAddrFromAddrPort(server)
	buf := make([]byte, 65536)
	var probe netip.AddrPort
	// exchange sends p to addr until a packet from the transfer arrives.
	exchange := func(p []byte, addr *net.UDPAddr) ([]byte, *net.UDPAddr, error) {
		for tries := 0; ; tries++ {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			if _, err := conn.WriteToUDP(p, addr); err != nil {
				return nil, nil, err
			}
			got, from, err := c.receive(conn, buf, probe)
			if err == nil {
				return got, from, nil
			}
			if tries >= c.Retries {
				return nil, nil, fmt.Errorf("no answer after %d tries: %v", tries+1, err)
			}
			r.resends++
		}
	}
	// The size probe.
	p, peer, err := exchange(rrq(name, "tsize", "0"), to)
	if err != nil {
		return r, fmt.Errorf("size probe: %w", err)
	}
	if op := binary.BigEndian.Uint16(p); op != opOACK {
		return r, fmt.Errorf("size probe: opcode %d %q, want OACK", op, p[4:])
	}
	opts := parseOpts(p[2:])
	if r.tsize, err = strconv.ParseInt(opts["tsize"], 10, 64); err != nil {
		return r, fmt.Errorf("size probe: OACK %q without tsize", p[2:])
	}
	conn.WriteToUDP(append([]byte{0, opERROR, 0, 0}, "TFTP Aborted\x00"...), peer)
	probe = peer.AddrPort()

	// The download.
	req := []string{"blksize", strconv.Itoa(c.Blksize)}
	if c.Window > 1 {
		req = append(req, "windowsize", strconv.Itoa(c.Window))
	}
	p, peer, err = exchange(rrq(name, req...), to)
	if err != nil {
		return r, fmt.Errorf("request: %w", err)
	}
	blksize, window := 512, 1
	switch binary.BigEndian.Uint16(p) {
	case opOACK:
		opts := parseOpts(p[2:])
		if v, err := strconv.Atoi(opts["blksize"]); err == nil {
			blksize = v
		}
		if v, err := strconv.Atoi(opts["windowsize"]); err == nil {
			window = v
		}
		p, peer, err = exchange([]byte{0, opACK, 0, 0}, peer)
	case opDATA:
	default:
		return r, fmt.Errorf("request: opcode %d %q", binary.BigEndian.Uint16(p), p[4:])
	}
	next := uint16(1)
	inWindow := 0
	for err == nil {
		if from := peer; from == nil {
			break
		}
		switch binary.BigEndian.Uint16(p) {
		case opDATA:
			if binary.BigEndian.Uint16(p[2:]) != next {
				// Lost or repeated: acknowledge what we have, RFC 7440.
				inWindow = 0
				p, peer, err = exchange([]byte{0, opACK, byte((next - 1) >> 8), byte(next - 1)}, peer)
				continue
			}
			r.data = append(r.data, p[4:]...)
			ack := []byte{0, opACK, byte(next >> 8), byte(next)}
			next++
			inWindow++
			if len(p)-4 < blksize {
				conn.WriteToUDP(ack, peer)
				return r, nil
			}
			if inWindow < window {
				// Within the window: wait for the next block without acknowledging.
				got, from, rerr := c.receive(conn, buf, probe)
				if rerr == nil {
					p, peer = got, from
					continue
				}
				r.resends++
			}
			inWindow = 0
			p, peer, err = exchange(ack, peer)
		case opOACK:
			// The OACK again: our ACK 0 was lost or late.
			p, peer, err = exchange([]byte{0, opACK, 0, 0}, peer)
		case opERROR:
			return r, fmt.Errorf("server error: %q", p[4:])
		default:
			return r, fmt.Errorf("opcode %d during the transfer", binary.BigEndian.Uint16(p))
		}
	}
	return r, err
}

// receive waits Timeout for a packet of at least 4 bytes, not from the
// finished transfer ignore.
func (c pxeClient) receive(conn *net.UDPConn, buf []byte, ignore netip.AddrPort) ([]byte, *net.UDPAddr, error) {
	conn.SetReadDeadline(time.Now().Add(c.Timeout))
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			return nil, nil, err
		}
		if n >= 4 && from.AddrPort() != ignore {
			return buf[:n], from, nil
		}
	}
}

func rrq(name string, opts ...string) []byte {
	p := append([]byte{0, opRRQ}, name...)
	p = append(p, "\x00octet\x00"...)
	for _, o := range opts {
		p = append(append(p, o...), 0)
	}
	return p
}

func parseOpts(b []byte) map[string]string {
	m := map[string]string{}
	var f [][]byte
	for len(b) > 0 {
		i := slices.Index(b, 0)
		if i < 0 {
			break
		}
		f, b = append(f, b[:i]), b[i+1:]
	}
	for i := 0; i+1 < len(f); i += 2 {
		m[string(f[i])] = string(f[i+1])
	}
	return m
}

// stormN is how many clients BenchmarkStorm runs at once:
// SEALROOT_TFTP_STORM, default 1000.
func stormN() int {
	if n, err := strconv.Atoi(os.Getenv("SEALROOT_TFTP_STORM")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// storm fetches name from addr with n PXE clients at once, each from its
// own loopback address, and returns each one's time.
func storm(tb testing.TB, addr, name string, n int, c pxeClient, want int) (times []time.Duration, resends int) {
	server := netip.MustParseAddrPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	times = make([]time.Duration, n)
	errs := make([]error, n)
	res := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		src := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
		wg.Go(func() {
			t0 := time.Now()
			r, err := c.fetch(ctx, src, server, name)
			times[i], res[i] = time.Since(t0), r.resends
			if err == nil && (len(r.data) != want || r.tsize != int64(want)) {
				err = fmt.Errorf("%d bytes, tsize %d, want %d", len(r.data), r.tsize, want)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("storm: %v", err)
	}
	for _, r := range res {
		resends += r
	}
	slices.Sort(times)
	return times, resends
}

// BenchmarkStorm: SEALROOT_TFTP_STORM (default 1000) PXE clients fetch
// a 74,213-byte file (Debian's undionly.kpxe) at once over loopback and
// report the p50 and p99 of their fetch times and the packets they sent
// again.
func BenchmarkStorm(b *testing.B) {
	const size = 74213
	path := writeRandomB(b, b.TempDir(), "undionly.kpxe", size)
	addr := startServerB(b, map[string]string{"undionly.kpxe": path})
	n := stormN()
	client := pxeClient{Blksize: 1456, Timeout: 4 * time.Second, Retries: 6}
	for b.Loop() {
		times, resends := storm(b, addr, "undionly.kpxe", n, client, size)
		b.ReportMetric(times[len(times)/2].Seconds(), "p50-s")
		b.ReportMetric(times[len(times)*99/100].Seconds(), "p99-s")
		b.ReportMetric(float64(resends), "resends")
	}
}
