package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sealroot/sealroot/test/netnstest"
)

// wire is a client socket that speaks TFTP by hand.
type wire struct {
	t    *testing.T
	conn *net.UDPConn
	peer netip.AddrPort // the transfer's TID once it answered
}

func newWire(t *testing.T, conn *net.UDPConn) *wire {
	t.Cleanup(func() { conn.Close() })
	return &wire{t: t, conn: conn}
}

func (w *wire) send(to netip.AddrPort, p []byte) {
	w.t.Helper()
	if _, err := w.conn.WriteToUDPAddrPort(p, to); err != nil {
		w.t.Fatal(err)
	}
}

// recv waits up to d for a packet; ok is false after d without one.
func (w *wire) recv(d time.Duration) (p []byte, ok bool) {
	w.t.Helper()
	buf := make([]byte, 65536)
	w.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := w.conn.ReadFromUDPAddrPort(buf)
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return nil, false
	}
	if err != nil {
		w.t.Fatal(err)
	}
	w.peer = from
	return buf[:n], true
}

func (w *wire) mustRecv(what string) []byte {
	w.t.Helper()
	p, ok := w.recv(5 * time.Second)
	if !ok || len(p) < 4 {
		w.t.Fatalf("%s: nothing within 5s", what)
	}
	return p
}

func ack(block uint16) []byte { return []byte{0, opACK, byte(block >> 8), byte(block)} }

// loopbackWire is a client socket on 127.0.0.1.
func loopbackWire(t *testing.T) *wire {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return newWire(t, c)
}

// PXE firmware asks the transfer size first and aborts that request with
// an ERROR once the OACK names it. The server must not answer the ERROR
// (RFC 1350: errors are not acknowledged): an answer from the probe's port
// reaches the client while it waits for its second request's OACK, and a
// ROM that takes the first packet from the server's address as the answer
// fails its boot.
func TestSizeProbeAbortIsNotAnswered(t *testing.T) {
	path := writeRandom(t, t.TempDir(), "undionly.kpxe", 74213)
	addr := netip.MustParseAddrPort(startServer(t, map[string]string{"undionly.kpxe": path}))
	w := loopbackWire(t)
	w.send(addr, rrq("undionly.kpxe", "tsize", "0"))
	p := w.mustRecv("OACK")
	if binary.BigEndian.Uint16(p) != opOACK || parseOpts(p[2:])["tsize"] != "74213" {
		t.Fatalf("probe answer %q, want OACK tsize 74213", p)
	}
	w.send(w.peer, append([]byte{0, opERROR, 0, 0}, "TFTP Aborted\x00"...))
	if p, ok := w.recv(700 * time.Millisecond); ok {
		t.Fatalf("the server answered the client's ERROR with %q", p)
	}
}

// A DATA block that does not arrive (or whose ACK is lost) is sent again
// by the server after its own timeout (default 1 s), not after the
// firmware's retransmission (4 s in EDK2's PXE; before, the server's own
// timeout was 5 s plus up to 1 s of random back-off).
func TestLostBlockSentAgainByServer(t *testing.T) {
	path := writeRandom(t, t.TempDir(), "f", 3000)
	files := map[string]string{"f": path}
	_, a := startLimited(t, files, func(*Server) {}) // default Timeout
	addr := netip.MustParseAddrPort(a)
	w := loopbackWire(t)
	w.send(addr, rrq("f", "blksize", "1024"))
	if p := w.mustRecv("OACK"); binary.BigEndian.Uint16(p) != opOACK {
		t.Fatalf("answer %q, want OACK", p)
	}
	w.send(w.peer, ack(0))
	first := w.mustRecv("DATA 1")
	// The client "loses" it: no ACK. The server sends it again.
	const wait = 2 * time.Second // the default Timeout, 1 s, and a margin
	again, ok := w.recv(wait)
	if !ok {
		t.Fatalf("block 1 not sent again within %v", wait)
	}
	if !bytes.Equal(again, first) {
		t.Fatalf("sent again: %d bytes, block %d; want block 1 again", len(again), binary.BigEndian.Uint16(again[2:]))
	}
	// The transfer goes on to the end.
	want, _ := os.ReadFile(path)
	var got []byte
	for block := uint16(1); ; block++ {
		p := again
		if block > 1 {
			p = w.mustRecv(fmt.Sprintf("DATA %d", block))
		}
		if binary.BigEndian.Uint16(p) != opDATA || binary.BigEndian.Uint16(p[2:]) != block {
			t.Fatalf("got opcode %d block %d, want DATA %d", binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), block)
		}
		got = append(got, p[4:]...)
		w.send(w.peer, ack(block))
		if len(p)-4 < 1024 {
			break
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got %d bytes, want the file's %d", len(got), len(want))
	}
}

// A client that asks RFC 7440 windowsize gets that many blocks per ACK; an
// ACK of an earlier block of the window (the client lost the next) makes
// the server go on from there; the file arrives whole.
func TestWindowsize(t *testing.T) {
	const size = 100_003
	path := writeRandom(t, t.TempDir(), "ipxe.efi", size)
	a := startServer(t, map[string]string{"ipxe.efi": path})
	addr := netip.MustParseAddrPort(a)
	w := loopbackWire(t)
	w.send(addr, rrq("ipxe.efi", "blksize", "512", "windowsize", "4"))
	p := w.mustRecv("OACK")
	if opts := parseOpts(p[2:]); binary.BigEndian.Uint16(p) != opOACK || opts["windowsize"] != "4" || opts["blksize"] != "512" {
		t.Fatalf("answer %q, want OACK with windowsize 4 and blksize 512", p)
	}
	w.send(w.peer, ack(0))
	for block := uint16(1); block <= 4; block++ {
		p := w.mustRecv(fmt.Sprintf("DATA %d", block))
		if binary.BigEndian.Uint16(p) != opDATA || binary.BigEndian.Uint16(p[2:]) != block {
			t.Fatalf("got opcode %d block %d, want DATA %d of the first window", binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), block)
		}
	}
	// Before the window's ACK only its blocks come again (retransmitted
	// after the server's timeout), never block 5.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		if p, ok := w.recv(time.Until(deadline)); ok && binary.BigEndian.Uint16(p[2:]) > 4 {
			t.Fatalf("block %d sent before the window's ACK", binary.BigEndian.Uint16(p[2:]))
		}
	}
	w.send(w.peer, ack(2)) // blocks 3 and 4 "lost"
	for block := uint16(3); block <= 6; block++ {
		got := uint16(0)
		for got < block { // earlier blocks: retransmissions sent before the ACK
			got = binary.BigEndian.Uint16(w.mustRecv(fmt.Sprintf("DATA %d", block))[2:])
		}
		if got != block {
			t.Fatalf("after ACK 2: block %d, want %d", got, block)
		}
	}
	w.send(w.peer, append([]byte{0, opERROR, 0, 0}, "done\x00"...))

	want, _ := os.ReadFile(path)
	for _, window := range []int{2, 8, 64} {
		c := pxeClient{Blksize: 1428, Window: window, Timeout: 4 * time.Second, Retries: 6}
		r, err := c.fetch(context.Background(), netip.MustParseAddr("127.0.0.1"), addr, "ipxe.efi")
		if err != nil {
			t.Fatalf("windowsize %d: %v", window, err)
		}
		if !bytes.Equal(r.data, want) {
			t.Errorf("windowsize %d: %d bytes differ from the file's %d", window, len(r.data), len(want))
		}
	}
}

// blksize is granted up to what the interface the request came in on
// carries in one unfragmented datagram: MTU 1500 less 20 (IPv4), 8 (UDP)
// and 4 (TFTP) bytes. (pin/tftp, before, subtracted 28 and granted 1472:
// every full block left the host in two IP fragments.)
func TestBlksizeCappedAtMTU(t *testing.T) {
	if os.Getenv(mtuChildEnv) == "1" {
		blksizeOnMTU1500(t)
		return
	}
	// The server and its client run in a process of their own in the
	// namespace, whose loopback has MTU 1500.
	ns := netnstest.New(t, fmt.Sprintf("tftpmtu%d", os.Getpid()))
	err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(lo, 1500)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := ns.Command(ctx, os.Args[0], "-test.run=^TestBlksizeCappedAtMTU$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), mtuChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in namespace %s: %v\n%s", ns.Name, err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestBlksizeCappedAtMTU")) {
		t.Fatalf("in namespace %s: no PASS:\n%s", ns.Name, out)
	}
}

// mtuChildEnv marks the test process TestBlksizeCappedAtMTU runs in its
// namespace.
const mtuChildEnv = "SEALROOT_TFTP_MTU_CHILD"

// blksizeOnMTU1500 runs in a namespace whose loopback has MTU 1500.
func blksizeOnMTU1500(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil || lo.MTU != 1500 {
		t.Fatalf("loopback MTU %v (%v), want 1500", lo, err)
	}
	path := writeRandom(t, t.TempDir(), "f", 5000)
	addr := netip.MustParseAddrPort(startServer(t, map[string]string{"f": path}))
	w := loopbackWire(t)
	for _, tt := range []struct{ ask, want string }{{"8192", "1468"}, {"1468", "1468"}, {"1456", "1456"}} {
		w.send(addr, rrq("f", "blksize", tt.ask))
		p := w.mustRecv("OACK")
		if got := parseOpts(p[2:])["blksize"]; binary.BigEndian.Uint16(p) != opOACK || got != tt.want {
			t.Errorf("blksize %s on MTU 1500: answer %q, want OACK blksize %s", tt.ask, p, tt.want)
		}
		w.send(w.peer, append([]byte{0, opERROR, 0, 0}, "done\x00"...))
	}
}

// A file changed on disk is served as it is now (the server keeps files
// in memory and reads one again when its size or time changed).
func TestChangedFileServedAnew(t *testing.T) {
	dir := t.TempDir()
	path := writeRandom(t, dir, "undionly.kpxe", 5000)
	addr := startServer(t, map[string]string{"undionly.kpxe": path})
	for i, size := range []int{5000, 7000, 3000} {
		if i > 0 {
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(i + j)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, _ := os.ReadFile(path)
		got, err := fetch(t, addr, "undionly.kpxe", 1428)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("after write %d: %d bytes (%v), want the file's %d", i, len(got), err, len(want))
		}
	}
}

// FuzzParseRequest: any read request body parses or errors, never panics,
// and a parsed one has a name and a mode.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range [][]byte{
		rrq("undionly.kpxe", "tsize", "0")[2:],
		rrq("ipxe.efi", "blksize", "1468", "windowsize", "8", "tsize", "0")[2:],
		[]byte("f\x00octet\x00"),
		[]byte("f\x00octet\x00blksize\x00"),
		[]byte("\x00\x00"),
		[]byte("f"),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rq, err := parseRequest(b)
		if err == nil && (rq.name == "" || rq.mode == "") {
			t.Fatalf("parseRequest(%q) = %+v without a name or mode", b, rq)
		}
		if err == nil {
			tr := &transfer{size: 1000}
			tr.negotiate(rq.opts, 1468)
			if tr.blksize < 8 || tr.blksize > 1468 || tr.window < 1 || tr.window > DefaultMaxWindow {
				t.Fatalf("options %q gave blksize %d window %d", rq.opts, tr.blksize, tr.window)
			}
		}
	})
}

// A server whose Serve runs on a thread locked into a network namespace
// (as a test lab or a caller of netns.Set does) answers from that
// namespace: each transfer's socket is opened where the listener is, not
// on whichever thread the transfer's goroutine runs on.
func TestServeInNamespace(t *testing.T) {
	ns := netnstest.New(t, fmt.Sprintf("tftpns%d", os.Getpid()))
	path := writeRandom(t, t.TempDir(), "f", 3000)
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan netip.AddrPort, 1)
	served := make(chan error, 1)
	go func() {
		served <- ns.Do(func() error {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				close(listening)
				return err
			}
			listening <- conn.LocalAddr().(*net.UDPAddr).AddrPort()
			return New(map[string]string{"f": path}, nil).Serve(ctx, conn)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr, ok := <-listening
	if !ok {
		t.Fatal("listen in the namespace failed")
	}
	var w *wire
	if err := ns.Do(func() error {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		w = newWire(t, c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	w.send(addr, rrq("f"))
	if p := w.mustRecv("block 1 from the namespace"); binary.BigEndian.Uint16(p) != opDATA {
		t.Fatalf("answer %q, want DATA", p)
	}
}
