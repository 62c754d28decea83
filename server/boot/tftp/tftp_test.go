package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	pintftp "github.com/pin/tftp/v3"

	"github.com/sealroot/sealroot/test/testenv"
)

// startServer serves files on a loopback port and stops it at cleanup.
func startServer(t *testing.T, files map[string]string) string { return startServerB(t, files) }

func startServerB(t testing.TB, files map[string]string) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := testenv.Logger(t, "", hclog.Debug)
	srv := New(files, logger)
	srv.Timeout = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	})
	// Wait until the server reads with packet info: pin/tftp caps the block
	// size at 512 for datagrams that arrive before Serve has enabled it.
	fetch(t, conn.LocalAddr().String(), "warm-up", 0)
	return conn.LocalAddr().String()
}

func writeRandom(t *testing.T, dir, name string, n int) string { return writeRandomB(t, dir, name, n) }

func writeRandomB(t testing.TB, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fetch(t testing.TB, addr, name string, blksize int) ([]byte, error) {
	t.Helper()
	c, err := pintftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	if blksize != 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func TestFetchByteIdentical(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"odd.bin":     writeRandom(t, dir, "odd.bin", 100_003),
		"aligned.bin": writeRandom(t, dir, "aligned.bin", 512*7),
		"empty.bin":   writeRandom(t, dir, "empty.bin", 0),
	}
	for _, name := range []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"} {
		if p := filepath.Join("/usr/lib/ipxe", name); fileExists(p) {
			files[name] = p
		}
	}
	addr := startServer(t, files)
	for name, path := range files {
		for _, blksize := range []int{0, 1428, 8192} {
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetch(t, addr, name, blksize)
			if err != nil {
				t.Errorf("fetch %s blksize %d: %v", name, blksize, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("fetch %s blksize %d: %d bytes differ from %d on disk", name, blksize, len(got), len(want))
			}
		}
	}
	t.Run("leading_slash", func(t *testing.T) {
		if _, err := fetch(t, addr, "/odd.bin", 1428); err != nil {
			t.Errorf("fetch /odd.bin: %v", err)
		}
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	secret := writeRandom(t, dir, "not-in-table", 10)
	addr := startServer(t, map[string]string{
		"ok.bin":   writeRandom(t, dir, "ok.bin", 10),
		"gone.bin": filepath.Join(dir, "deleted"),
	})
	tests := []struct {
		name, file, wantMsg string
	}{
		{"unknown_file", "nope.bin", ErrNotFound.Error()},
		{"path_outside_table", secret, ErrNotFound.Error()},
		{"traversal", "../" + filepath.Base(secret), ErrNotFound.Error()},
		{"missing_on_disk", "gone.bin", ErrUnavailable.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fetch(t, addr, tt.file, 0)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("fetch %q = %v, want TFTP error %q", tt.file, err, tt.wantMsg)
			}
		})
	}
	t.Run("write_refused", func(t *testing.T) {
		c, err := pintftp.NewClient(addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetTimeout(time.Second)
		rf, err := c.Send("ok.bin", "octet")
		if err == nil {
			_, err = rf.ReadFrom(strings.NewReader("overwrite"))
		}
		if err == nil || !strings.Contains(err.Error(), "does not support write") {
			t.Errorf("write = %v, want refusal", err)
		}
		got, err := fetch(t, addr, "ok.bin", 0)
		if err != nil || len(got) != 10 {
			t.Errorf("after refused write: %d bytes, %v", len(got), err)
		}
	})
}

// TestBlksizeNegotiation speaks raw TFTP to check the OACK and the size of
// the first DATA packet (RFC 2347, 2348).
func TestBlksizeNegotiation(t *testing.T) {
	dir := t.TempDir()
	addr := startServer(t, map[string]string{"f": writeRandom(t, dir, "f", 5000)})
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	server, _ := net.ResolveUDPAddr("udp", addr)
	rrq := append([]byte{0, 1}, "f\x00octet\x00blksize\x001428\x00tsize\x000\x00"...)
	if _, err := c.WriteTo(rrq, server); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	n, peer, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	oack := buf[:n]
	if binary.BigEndian.Uint16(oack) != 6 || !bytes.Contains(oack, []byte("blksize\x001428\x00")) || !bytes.Contains(oack, []byte("tsize\x005000\x00")) {
		t.Fatalf("reply = %q, want OACK with blksize 1428 and tsize 5000", oack)
	}
	if _, err := c.WriteTo([]byte{0, 4, 0, 0}, peer); err != nil { // ACK 0
		t.Fatal(err)
	}
	n, _, err = c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if op, block := binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:]); op != 3 || block != 1 || n != 4+1428 {
		t.Errorf("first DATA: op %d block %d len %d, want 3 1 %d", op, block, n, 4+1428)
	}
	c.WriteTo([]byte{0, 5, 0, 0, 'x', 0}, peer) // abort the transfer with ERROR
}

func TestServeAfterCancelReturnsAndClosesConn(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(nil, nil).Serve(ctx, conn); err != nil {
		t.Fatalf("Serve(cancelled) = %v", err)
	}
	if _, err := conn.WriteTo([]byte{0}, conn.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("conn after Serve: %v, want net.ErrClosed", err)
	}
}
