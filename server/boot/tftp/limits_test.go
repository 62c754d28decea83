package tftp

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/test/testenv"
)

// startLimited serves files on 127.0.0.1 with srv's limits set by mod.
func startLimited(t *testing.T, files map[string]string, mod func(*Server)) (*Server, string) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(files, testenv.Logger(t, "", hclog.Debug))
	mod(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	fetch(t, conn.LocalAddr().String(), "warm-up", 0)
	return srv, conn.LocalAddr().String()
}

// rawClient speaks TFTP by hand from a loopback address of its own.
type rawClient struct {
	t    *testing.T
	conn net.PacketConn
	peer net.Addr // the transfer's port, once the server answered
}

func newRawClient(t *testing.T, src string) *rawClient {
	t.Helper()
	c, err := net.ListenPacket("udp", src+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c}
}

// request sends an RRQ (octet, no options: 512-byte blocks) and returns
// the server's first packet: opcode, block or error code, payload.
func (c *rawClient) request(server, name string) (uint16, uint16, []byte) {
	c.t.Helper()
	addr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		c.t.Fatal(err)
	}
	rrq := append([]byte{0, 1}, name...)
	rrq = append(append(rrq, 0), "octet\x00"...)
	if _, err := c.conn.WriteTo(rrq, addr); err != nil {
		c.t.Fatal(err)
	}
	return c.receive()
}

func (c *rawClient) receive() (uint16, uint16, []byte) {
	c.t.Helper()
	buf := make([]byte, 1024)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.conn.ReadFrom(buf)
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	c.peer = from
	return binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:]), buf[4:n]
}

func (c *rawClient) ack(block uint16) {
	c.t.Helper()
	if _, err := c.conn.WriteTo([]byte{0, 4, byte(block >> 8), byte(block)}, c.peer); err != nil {
		c.t.Fatal(err)
	}
}

// A source may run TransfersPerSource transfers; the next request gets a
// TFTP error at once, other sources are served, and a stalled transfer
// frees its place when it times out.
func TestTransfersPerSource(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"ipxe.efi": writeRandom(t, dir, "ipxe.efi", 64<<10)}
	srv, addr := startLimited(t, files, func(s *Server) {
		s.TransfersPerSource = 1
		s.Timeout, s.Retries = 200*time.Millisecond, 2
	})

	stalled := newRawClient(t, "127.0.0.11")
	if op, block, _ := stalled.request(addr, "ipxe.efi"); op != opDATA || block != 1 {
		t.Fatalf("first transfer: opcode %d block %d, want DATA 1", op, block)
	}
	// It never acknowledges.
	second := newRawClient(t, "127.0.0.11")
	op, _, msg := second.request(addr, "ipxe.efi")
	if op != opERROR || !strings.Contains(string(msg), ErrBusy.Error()) {
		t.Fatalf("second transfer from one source: opcode %d %q, want ERROR %q", op, msg, ErrBusy)
	}
	if got, err := fetch(t, addr, "ipxe.efi", 0); err != nil || len(got) != 64<<10 {
		t.Fatalf("other source: %d bytes, %v", len(got), err)
	}
	if srv.Busy() != 1 {
		t.Errorf("busy = %d, want 1", srv.Busy())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		op, _, _ := newRawClient(t, "127.0.0.11").request(addr, "ipxe.efi")
		if op == opDATA {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled transfer did not free its place")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A client that acknowledges each block just in time is cut after
// MaxTransferTime.
func TestSlowTransferEnds(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"ipxe.efi": writeRandom(t, dir, "ipxe.efi", 64<<10)}
	_, addr := startLimited(t, files, func(s *Server) {
		s.MaxTransferTime = 500 * time.Millisecond
		s.Timeout = time.Second
	})
	c := newRawClient(t, "127.0.0.12")
	op, block, _ := c.request(addr, "ipxe.efi")
	start := time.Now()
	last := block
	for op == opDATA && time.Since(start) < 10*time.Second {
		last = block
		time.Sleep(100 * time.Millisecond)
		c.ack(block)
		op, block, _ = c.receive()
	}
	if op != opERROR {
		t.Fatalf("slow transfer: opcode %d after %v, want an ERROR", op, time.Since(start))
	}
	if last > 64 {
		t.Errorf("slow transfer reached block %d, want it cut near 500ms (about 5 blocks)", last)
	}
}
