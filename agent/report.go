package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// ReportTimeout bounds sending the boot report: a server that does not
// take it delays the boot by at most this much. It allows for a lost
// first WireGuard handshake initiation (retried after 5 seconds).
const ReportTimeout = 15 * time.Second

// BootLog keeps the tail of what the agent writes to its console and log
// (the last wire.MaxReportLog bytes), for the boot report. It is safe for
// concurrent use; the zero value is ready.
type BootLog struct {
	mu  sync.Mutex // guards buf
	buf []byte
}

// Write appends p, dropping the oldest bytes beyond wire.MaxReportLog.
func (l *BootLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if n := len(l.buf) - wire.MaxReportLog; n > 0 {
		l.buf = append(l.buf[:0], l.buf[n:]...)
	}
	return len(p), nil
}

// String returns the kept log.
func (l *BootLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(bytes.ToValidUTF8(l.buf, []byte("?")))
}

// Redacted stands for a secret value found in the log.
const Redacted = "[redacted]"

// Scrub returns log with every secret value of p replaced by Redacted.
// The agent never writes secret values, and this is the edge check that
// a bug elsewhere cannot send one.
func Scrub(log string, p *wire.Payload) string {
	b := []byte(log)
	for _, v := range p.Secrets {
		if len(v) > 0 {
			b = bytes.ReplaceAll(b, v, []byte(Redacted))
		}
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// DialFunc opens a connection; (*net.Dialer).DialContext is one.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// SendReport sends r to the server at the tunnel address serverAddr
// (wire.ReportPort): the encoded report, then the end of the stream; the
// server answers "ok\n" once it stored it.
func SendReport(ctx context.Context, dial DialFunc, serverAddr string, r *wire.BootReport) error {
	ip, err := netip.ParseAddr(serverAddr)
	if err != nil {
		return fmt.Errorf("boot report: server address %q: %w", serverAddr, err)
	}
	body, err := wire.EncodeBootReport(r)
	if err != nil {
		return fmt.Errorf("boot report: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, ReportTimeout)
	defer cancel()
	c, err := dial(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(wire.ReportPort)))
	if err != nil {
		return fmt.Errorf("boot report: %w", err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write(body); err != nil {
		return fmt.Errorf("boot report: send: %w", err)
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("boot report: send: %w", err)
		}
	}
	answer, err := io.ReadAll(io.LimitReader(c, 256))
	if err != nil {
		return fmt.Errorf("boot report: answer: %w", err)
	}
	if string(answer) != "ok\n" {
		return fmt.Errorf("boot report: server answered %q", bytes.TrimSpace(answer))
	}
	return nil
}

// ErrNoReport means the boot has no way to reach the server's report
// endpoint (no tunnel came up).
var ErrNoReport = errors.New("no tunnel to send the boot report through")
