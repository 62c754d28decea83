package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// benchBytes is what one iteration sends over each path.
const benchBytes = 64 << 20

// BenchmarkThroughput sends the same payload over plain TCP across the
// lab's veth and over the tunnel (server ends: kernel WireGuard where the
// kernel has it, wireguard-go on a TUN, netstack; the client is
// wireguard-go on a TUN), and reports tunnel/plain ratios.
func BenchmarkThroughput(b *testing.B) {
	for _, mode := range labModes {
		b.Run(mode.name, func(b *testing.B) { benchThroughput(b, mode.cfg) })
	}
}

func benchThroughput(b *testing.B, mode Config) {
	l := newLabWith(b, mode)
	a := newClient(b, l.m["a"], "srtwg-a")
	plan, err := l.tun.Add(context.Background(), "machine-a", a.pub())
	if err != nil {
		b.Fatal(err)
	}
	a.configure(b, plan)
	var plainLn net.Listener
	if err := l.s.Do(func() (err error) {
		plainLn, err = net.Listen("tcp4", netip.AddrPortFrom(lanServer.Addr(), 5001).String())
		if err != nil {
			return err
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var tunLn net.Listener
	if err := l.s.Do(func() (err error) { tunLn, err = l.tun.Listen("tcp", 5002); return err }); err != nil {
		b.Fatal(err)
	}
	go sink(plainLn)
	go sink(tunLn)
	b.Cleanup(func() { plainLn.Close(); tunLn.Close() })
	plainTo := netip.AddrPortFrom(lanServer.Addr(), 5001)
	tunTo := netip.AddrPortFrom(l.tun.ServerAddr(), 5002)
	buf := make([]byte, 256<<10)
	var plain, tunnel time.Duration
	b.SetBytes(2 * benchBytes)
	b.ResetTimer()
	for range b.N {
		plain += send(b, l, plainTo, buf)
		tunnel += send(b, l, tunTo, buf)
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(b.N) * benchBytes / d.Seconds() / 1e6 }
	ratio := plain.Seconds() / tunnel.Seconds()
	b.ReportMetric(mbps(plain), "plain-MB/s")
	b.ReportMetric(mbps(tunnel), "tunnel-MB/s")
	b.ReportMetric(ratio, "tunnel/plain")
	fmt.Printf("%s: plain %.0f MB/s, tunnel %.0f MB/s\nratio: tunnel/plain=%.3f\n", b.Name(), mbps(plain), mbps(tunnel), ratio)
}

// send writes benchBytes to to from machine A and waits for the sink's
// acknowledgement that it read them all.
func send(b *testing.B, l *lab, to netip.AddrPort, buf []byte) time.Duration {
	c, err := dial(l.m["a"], netip.Addr{}, to, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for left := benchBytes; left > 0; left -= len(buf) {
		if _, err := c.Write(buf[:min(left, len(buf))]); err != nil {
			b.Fatal(err)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatalf("ack: %v", err)
	}
	return time.Since(start)
}

// sink reads each connection to EOF and acknowledges with one byte.
func sink(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(io.Discard, c)
			c.Write([]byte{1})
		}()
	}
}
