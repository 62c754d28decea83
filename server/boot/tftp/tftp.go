// Package tftp serves the iPXE binaries (undionly.kpxe, ipxe.efi) that
// firmware PXE loads before it chains to HTTP.
//
// The server is read-only: write requests are refused with a TFTP error.
// It serves only the files named in its table, so a request can never reach
// any other path. Block size (RFC 2348) and transfer size (RFC 2349) options
// are negotiated; larger blocks matter (512-byte blocks are ~40% slower than
// 1428, see notes/prior-art.md).
//
// # Wiring
//
//	srv := tftp.New(map[string]string{
//		"undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe",
//		"ipxe.efi":      "/usr/lib/ipxe/ipxe.efi",
//	}, logger)
//	err := srv.ListenAndServe(ctx, "192.0.2.1:69") // returns after ctx is done
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	pintftp "github.com/pin/tftp/v3"

	"github.com/sealroot/sealroot/server/boot/pace"
	"github.com/sealroot/sealroot/server/servestats"
)

// Errors sent to clients (as TFTP ERROR packets) and returned by the read
// handler, for errors.Is.
var (
	ErrNotFound    = errors.New("file not found")
	ErrUnavailable = errors.New("file not available")
	// ErrBusy refuses a transfer to a source that already has
	// TransfersPerSource running.
	ErrBusy = errors.New("too many transfers from this address")
	// ErrTooSlow ends a transfer that ran longer than MaxTransferTime.
	ErrTooSlow = errors.New("transfer took too long")
)

// Defaults for Server fields.
const (
	DefaultTimeout            = 5 * time.Second
	DefaultRetries            = 5
	DefaultTransfersPerSource = 4
	DefaultMaxTransferTime    = 2 * time.Minute
)

// Server is a read-only TFTP server for a fixed table of files. Set fields
// before calling Serve; the zero values of Timeout and Retries mean
// DefaultTimeout and DefaultRetries. A Server may serve several conns at
// once.
type Server struct {
	// Timeout is the per-packet retransmission timeout.
	Timeout time.Duration
	// Retries is how often a packet is retransmitted before a transfer
	// is abandoned. Shutdown waits at most about Timeout*Retries for
	// transfers to a vanished client.
	Retries int
	// TransfersPerSource is how many transfers one source address may
	// have running; default DefaultTransfersPerSource. Further requests
	// get a TFTP error and are counted (Busy), not logged.
	TransfersPerSource int
	// MaxTransferTime ends a transfer that has not finished in it (a
	// client that acknowledges just often enough not to time out);
	// default DefaultMaxTransferTime. A silent client is dropped after
	// about Timeout*Retries.
	MaxTransferTime time.Duration
	// Stats, if set, counts requests by result (ok, failed, busy,
	// unknown) and the bytes of files sent.
	Stats *servestats.Counter
	// RateCap paces each transfer to this many bytes per second (0: no
	// cap), for NICs that hang at line rate; Clock is its time source
	// (nil: the system clock).
	RateCap int64
	Clock   pace.Clock

	files  map[string]string // name -> path; read-only after New
	logger hclog.Logger

	busy    atomic.Uint64
	unknown atomic.Uint64
	mu      sync.Mutex
	running map[netip.Addr]int // guarded by mu: transfers per source
}

// Busy returns how many requests were refused with ErrBusy.
func (s *Server) Busy() uint64 { return s.busy.Load() }

// Unknown returns how many requests named a file the server does not
// serve: noise from anyone on the boot network, counted, not logged.
func (s *Server) Unknown() uint64 { return s.unknown.Load() }

// New returns a server for files, a map from the name clients request to
// the local path. A nil logger discards logs.
func New(files map[string]string, logger hclog.Logger) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	table := make(map[string]string, len(files))
	for name, path := range files {
		table[name] = path
	}
	return &Server{files: table, logger: logger.Named("tftp"), running: make(map[netip.Addr]int)}
}

// ListenAndServe listens on the UDP address addr and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("tftp: listen: %w", err)
	}
	return s.Serve(ctx, conn)
}

// Serve serves requests arriving on conn until ctx is done, then stops
// accepting requests and waits for running transfers to finish or time out.
// Serve takes ownership of conn and closes it; the caller must not close it
// (the underlying library spins on a closed conn). Returns nil after a
// shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	srv := pintftp.NewServer(func(name string, rf io.ReaderFrom) error { return s.read(ctx, name, rf) }, nil)
	srv.SetTimeout(orDefault(s.Timeout, DefaultTimeout))
	srv.SetRetries(orDefault(s.Retries, DefaultRetries))
	srv.SetHook(hook{s.logger})
	s.logger.Info("serving", "addr", conn.LocalAddr().String(), "files", len(s.files))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-stop:
		}
		srv.Shutdown() // closes conn, waits for transfers
	}()
	err := srv.Serve(conn)
	close(stop)
	wg.Wait()
	// A Shutdown that ran before the library took conn did not close it.
	conn.Close()
	if err != nil {
		return fmt.Errorf("tftp: serve: %w", err)
	}
	s.logger.Info("stopped", "addr", conn.LocalAddr().String())
	return nil
}

// read is the library's read handler: it streams one file from the table.
func (s *Server) read(ctx context.Context, name string, rf io.ReaderFrom) error {
	remote := ""
	var src netip.Addr
	if ot, ok := rf.(pintftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		remote = ra.String()
		src = ra.AddrPort().Addr().Unmap()
	}
	if !s.begin(src) {
		s.busy.Add(1)
		s.Stats.Request("busy")
		return ErrBusy
	}
	defer s.end(src)
	path, ok := s.lookup(name)
	if !ok {
		s.unknown.Add(1)
		s.Stats.Request("unknown")
		s.logger.Debug("unknown file", "remote", remote, "file", truncate(name))
		return ErrNotFound
	}
	f, err := os.Open(path)
	if err != nil {
		s.logger.Error("opening file failed", "file", name, "path", path, "error", err)
		return ErrUnavailable
	}
	defer f.Close()
	var dr io.ReadSeeker = &deadlineFile{File: f, deadline: time.Now().Add(orDefault(s.MaxTransferTime, DefaultMaxTransferTime))}
	if s.RateCap > 0 {
		dr = pace.NewReadSeeker(ctx, dr, s.RateCap, orDefault[pace.Clock](s.Clock, pace.SystemClock{}))
	}
	n, err := rf.ReadFrom(dr)
	s.Stats.Sent(int(n))
	if err != nil {
		s.Stats.Request("failed")
		return fmt.Errorf("sending %s: %w", name, err)
	}
	s.Stats.Request("ok")
	return nil
}

// begin counts a transfer of src and reports whether it is within the
// limit; if not, nothing is counted.
func (s *Server) begin(src netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[src] >= orDefault(s.TransfersPerSource, DefaultTransfersPerSource) {
		return false
	}
	s.running[src]++
	return true
}

func (s *Server) end(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[src] <= 1 {
		delete(s.running, src)
	} else {
		s.running[src]--
	}
}

// deadlineFile fails reads after its deadline, which ends the transfer
// (the library reads a block only after the previous one was
// acknowledged). It seeks for the transfer-size option.
type deadlineFile struct {
	*os.File
	deadline time.Time
}

func (f *deadlineFile) Read(p []byte) (int, error) {
	if time.Now().After(f.deadline) {
		return 0, ErrTooSlow
	}
	return f.File.Read(p)
}

// lookup maps a requested name to a path. Some PXE ROMs prefix a slash.
func (s *Server) lookup(name string) (string, bool) {
	path, ok := s.files[strings.TrimPrefix(name, "/")]
	return path, ok
}

// hook logs finished transfers.
type hook struct{ logger hclog.Logger }

func (h hook) OnSuccess(st pintftp.TransferStats) {
	h.logger.Info("transfer done", "remote", st.RemoteAddr.String(), "file", st.Filename,
		"blksize", st.Opts["blksize"], "datagrams", st.DatagramsSent, "duration", st.Duration)
}

func (h hook) OnFailure(st pintftp.TransferStats, err error) {
	if errors.Is(err, ErrBusy) {
		return // counted in Server.Busy
	}
	h.logger.Warn("transfer failed", "remote", st.RemoteAddr.String(), "file", truncate(st.Filename),
		"duration", st.Duration, "error", err)
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// truncate shortens client-chosen names before they are logged.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
