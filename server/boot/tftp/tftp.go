// Package tftp serves the iPXE binaries (undionly.kpxe, ipxe.efi) that
// firmware PXE loads before it chains to HTTP.
//
// The server is read-only: write requests are refused with a TFTP error.
// It serves only the files named in its table, so a request can never reach
// any other path. Block size (RFC 2348, up to what the MTU of the interface
// the request came in on carries), transfer size (RFC 2349) and window size
// (RFC 7440, when a client asks) are negotiated; larger blocks matter
// (512-byte blocks are ~40% slower than 1428, see notes/prior-art.md).
//
// Each transfer runs in its own goroutine on its own socket (its TID), and
// the files are read once into memory (the iPXE binaries are small) and
// read again only when they change on disk, so a room of machines powered
// on at once is served in parallel. The server retransmits on its own
// timer, which adapts to the round trip it measures, so a lost block costs
// a fraction of a second instead of the firmware's retransmission timeout
// (4 s in EDK2's PXE).
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
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/ipv4"

	"github.com/sealroot/sealroot/server/boot/pace"
	"github.com/sealroot/sealroot/server/boot/udpbuf"
	"github.com/sealroot/sealroot/server/servestats"
)

// Errors sent to clients (as TFTP ERROR packets), for errors.Is.
var (
	ErrNotFound    = errors.New("file not found")
	ErrUnavailable = errors.New("file not available")
	// ErrBusy refuses a transfer to a source that already has
	// TransfersPerSource running.
	ErrBusy = errors.New("too many transfers from this address")
	// ErrTooSlow ends a transfer that ran longer than MaxTransferTime.
	ErrTooSlow = errors.New("transfer took too long")
	// ErrWrite refuses write requests.
	ErrWrite = errors.New("server does not support write requests")
	// ErrMode refuses a mode other than octet (netascii, mail).
	ErrMode = errors.New("only octet mode is served")
	// errAborted is a client's ERROR during a transfer: PXE firmware
	// aborts its transfer-size request once the OACK names the size.
	errAborted = errors.New("aborted by the client")
)

// Defaults for Server fields.
const (
	DefaultTimeout            = time.Second
	DefaultRetries            = 5
	DefaultTransfersPerSource = 4
	DefaultMaxTransferTime    = 2 * time.Minute
	// DefaultMaxWindow caps the RFC 7440 window a client may ask.
	DefaultMaxWindow = 64
	// MaxRequests is how many requests one Serve answers at once
	// (transfers and refusals, each on a socket of its own); requests
	// beyond it are dropped and counted (Busy), and the client sends them
	// again after its timeout.
	MaxRequests = 4096
)

// minRTO is the shortest retransmission timeout, however short the
// measured round trip.
const minRTO = 100 * time.Millisecond

// Server is a read-only TFTP server for a fixed table of files. Set fields
// before calling Serve; the zero values of Timeout and Retries mean
// DefaultTimeout and DefaultRetries. A Server may serve several conns at
// once.
type Server struct {
	// Timeout is the longest per-packet retransmission timeout: the
	// server retransmits after a few measured round trips (at least
	// 100 ms), doubling the wait after each timeout up to Timeout.
	Timeout time.Duration
	// Retries is how often a packet is retransmitted at Timeout before a
	// transfer is abandoned: a transfer to a vanished client ends, and
	// shutdown waits, at most about Timeout*(Retries+3).
	Retries int
	// TransfersPerSource is how many transfers one source address may
	// have running; default DefaultTransfersPerSource. Further requests
	// get a TFTP error and are counted (Busy), not logged.
	TransfersPerSource int
	// MaxTransferTime ends a transfer that has not finished in it (a
	// client that acknowledges just often enough not to time out);
	// default DefaultMaxTransferTime.
	MaxTransferTime time.Duration
	// Stats, if set, counts requests by result (ok, failed, aborted,
	// busy, unknown) and the bytes of files sent.
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
	running map[netip.Addr]int    // guarded by mu: transfers per source
	cache   map[string]cachedFile // guarded by mu: by path
	mtus    map[int]cachedMTU     // guarded by mu: by interface index
}

// cachedFile is a file's bytes as read when it had size and mtime.
type cachedFile struct {
	data  []byte
	size  int64
	mtime time.Time
}

// cachedMTU is an interface's MTU, looked up at.
type cachedMTU struct {
	mtu int
	at  time.Time
}

// Busy returns how many requests were refused with ErrBusy or dropped
// beyond MaxRequests.
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
	return &Server{files: table, logger: logger.Named("tftp"), running: make(map[netip.Addr]int),
		cache: make(map[string]cachedFile), mtus: make(map[int]cachedMTU)}
}

// ListenAndServe listens on the UDP address addr and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("tftp: listen: %w", err)
	}
	return s.Serve(ctx, conn)
}

// Serve serves requests arriving on conn until ctx is done, then closes
// conn and waits for running transfers, which end with ctx. Serve takes
// ownership of conn. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	udpbuf.Grow(conn) // the read requests of a room powered on at once
	s.logger.Info("serving", "addr", conn.LocalAddr().String(), "files", len(s.files))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()

	listenIP := netip.IPv4Unspecified()
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		listenIP = ua.AddrPort().Addr().Unmap()
	}
	var pc *ipv4.PacketConn
	if uc, ok := conn.(*net.UDPConn); ok && listenIP.Is4() {
		pc = ipv4.NewPacketConn(uc)
		if pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) != nil {
			pc = nil
		}
	}
	buf := make([]byte, 2048)
	var inFlight atomic.Int64
	for {
		var (
			n       int
			from    net.Addr
			err     error
			local   = listenIP
			ifIndex int
		)
		if pc != nil {
			var cm *ipv4.ControlMessage
			n, cm, from, err = pc.ReadFrom(buf)
			if cm != nil {
				ifIndex = cm.IfIndex
				if dst, ok := netip.AddrFromSlice(cm.Dst.To4()); ok && local.IsUnspecified() && dst != limitedBroadcast {
					local = dst // not 255.255.255.255: answer from the address asked
				}
			}
		} else {
			n, from, err = conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				s.logger.Info("stopped", "addr", conn.LocalAddr().String())
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("tftp: serve: %w", err)
			}
			continue // a transient error (ICMP unreachable): read on
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		req := request{from: ua.AddrPort(), local: local, ifIndex: ifIndex, packet: bytes.Clone(buf[:n])}
		req.from = netip.AddrPortFrom(req.from.Addr().Unmap(), req.from.Port())
		if inFlight.Add(1) > MaxRequests {
			inFlight.Add(-1)
			s.busy.Add(1)
			s.Stats.Request("busy")
			continue
		}
		// The transfer's socket is opened here, on Serve's goroutine, so
		// that it is in the network namespace Serve runs in: a caller may
		// run Serve on a thread locked into a namespace, and the
		// transfer's goroutine may run on any thread.
		tc := s.transferConn(req)
		if tc == nil {
			inFlight.Add(-1)
			continue
		}
		req.maxBlksize = s.maxBlksize(req.ifIndex) // its interface, here too
		wg.Go(func() {
			defer inFlight.Add(-1)
			defer tc.Close()
			s.serveRequest(ctx, tc, req)
		})
	}
}

// limitedBroadcast cannot be a reply's source: a request sent to it is
// answered from the address the kernel picks.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// request is one packet that arrived at the listener.
type request struct {
	packet  []byte
	from    netip.AddrPort
	local   netip.Addr // the address it was sent to
	ifIndex int        // the interface it came in on; 0: unknown
	// maxBlksize is the largest block that interface's MTU carries
	// unfragmented, looked up on Serve's goroutine (see transferConn).
	maxBlksize int
}

// TFTP opcodes and error codes (RFC 1350, 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6

	errCodeUndefined = 0
	errCodeNotFound  = 1
	errCodeIllegal   = 4
	errCodeOptions   = 8
)

// transferConn opens the socket of the transfer req starts, from the
// address req was sent to; nil when req starts none (an ACK or ERROR of
// a finished transfer, or noise) or the socket could not be opened.
func (s *Server) transferConn(req request) *net.UDPConn {
	if len(req.packet) < 2 {
		return nil
	}
	if op := binary.BigEndian.Uint16(req.packet); op != opRRQ && op != opWRQ {
		return nil
	}
	conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(req.local, 0)), net.UDPAddrFromAddrPort(req.from))
	if err != nil {
		s.logger.Error("opening a transfer socket failed", "error", err)
		return nil
	}
	return conn
}

// serveRequest answers a read or write request on conn, the transfer's
// socket (transferConn): a read request starts a transfer.
func (s *Server) serveRequest(ctx context.Context, conn *net.UDPConn, req request) {
	if binary.BigEndian.Uint16(req.packet) == opWRQ {
		sendError(conn, errCodeIllegal, ErrWrite)
		return
	}
	rq, err := parseRequest(req.packet[2:])
	if err != nil {
		s.Stats.Request("unknown")
		s.unknown.Add(1)
		sendError(conn, errCodeIllegal, err)
		return
	}
	if rq.mode != "octet" {
		s.Stats.Request("failed")
		sendError(conn, errCodeIllegal, ErrMode)
		return
	}
	path, ok := s.lookup(rq.name)
	if !ok {
		s.unknown.Add(1)
		s.Stats.Request("unknown")
		s.logger.Debug("unknown file", "remote", req.from.String(), "file", truncate(rq.name))
		sendError(conn, errCodeNotFound, ErrNotFound)
		return
	}
	data, err := s.load(path)
	if err != nil {
		s.logger.Error("reading file failed", "file", rq.name, "path", path, "error", err)
		s.Stats.Request("failed")
		sendError(conn, errCodeUndefined, ErrUnavailable)
		return
	}
	// Only a transfer holds one of its source's places: a request
	// answered with an error at once holds none, so the client's next
	// request never finds its place still taken by the answer it has.
	src := req.from.Addr()
	if !s.begin(src) {
		s.busy.Add(1)
		s.Stats.Request("busy")
		sendError(conn, errCodeUndefined, ErrBusy)
		return
	}
	defer s.end(src)
	start := time.Now()
	t := &transfer{
		conn:     conn,
		timeout:  orDefault(s.Timeout, DefaultTimeout),
		retries:  orDefault(s.Retries, DefaultRetries),
		deadline: start.Add(orDefault(s.MaxTransferTime, DefaultMaxTransferTime)),
		size:     int64(len(data)),
	}
	t.rto = t.timeout
	var r io.Reader = bytes.NewReader(data)
	if s.RateCap > 0 {
		r = pace.NewReader(ctx, r, s.RateCap, orDefault[pace.Clock](s.Clock, pace.SystemClock{}))
	}
	oack := t.negotiate(rq.opts, req.maxBlksize)
	n, err := t.run(ctx, oack, r)
	s.Stats.Sent(int(n))
	switch {
	case errors.Is(err, errAborted) && n == 0:
		// PXE's transfer-size request, aborted once it has the size.
		s.Stats.Request("aborted")
		s.logger.Debug("transfer aborted by the client", "remote", req.from.String(), "file", rq.name)
	case err != nil:
		s.Stats.Request("failed")
		if !errors.Is(err, errAborted) && !errors.Is(err, context.Canceled) {
			sendError(conn, errCodeUndefined, err)
		}
		s.logger.Warn("transfer failed", "remote", req.from.String(), "file", rq.name,
			"duration", time.Since(start), "error", err)
	default:
		s.Stats.Request("ok")
		s.logger.Debug("transfer done", "remote", req.from.String(), "file", rq.name, "blksize", t.blksize,
			"window", t.window, "datagrams", t.sent, "duration", time.Since(start))
	}
}

// readRequest is a parsed RRQ.
type readRequest struct {
	name, mode string
	opts       map[string]string // lower-case names
}

// parseRequest parses the body of an RRQ: name, mode, then option name
// and value pairs, each ending in a zero byte (RFC 1350, 2347).
func parseRequest(b []byte) (readRequest, error) {
	var fields []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return readRequest{}, errors.New("malformed request: field without its zero byte")
		}
		fields, b = append(fields, string(b[:i])), b[i+1:]
	}
	if len(fields) < 2 || fields[0] == "" || fields[1] == "" || len(fields)%2 != 0 {
		return readRequest{}, errors.New("malformed request")
	}
	rq := readRequest{name: fields[0], mode: strings.ToLower(fields[1]), opts: make(map[string]string)}
	for i := 2; i+1 < len(fields); i += 2 {
		rq.opts[strings.ToLower(fields[i])] = fields[i+1]
	}
	return rq, nil
}

// maxBlksize is the largest block the request's interface carries in one
// unfragmented datagram: its MTU less the IPv4, UDP and TFTP headers. An
// unknown interface gets Ethernet's 1468.
func (s *Server) maxBlksize(ifIndex int) int {
	const headers, ethernet = 20 + 8 + 4, 1500
	mtu := ethernet
	if ifIndex > 0 {
		mtu = s.mtu(ifIndex, ethernet)
	}
	return min(max(mtu-headers, 512), 65464)
}

// mtu is the MTU of interface index, looked up at most once a minute.
func (s *Server) mtu(index, fallback int) int {
	s.mu.Lock()
	c, ok := s.mtus[index]
	s.mu.Unlock()
	if ok && time.Since(c.at) < time.Minute {
		return c.mtu
	}
	ifi, err := net.InterfaceByIndex(index)
	if err != nil || ifi.MTU <= 0 {
		return fallback
	}
	s.mu.Lock()
	s.mtus[index] = cachedMTU{mtu: ifi.MTU, at: time.Now()}
	s.mu.Unlock()
	return ifi.MTU
}

// load returns path's bytes, read again only when its size or time of
// modification changed.
func (s *Server) load(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	c, ok := s.cache[path]
	s.mu.Unlock()
	if ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) {
		return c.data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != fi.Size() {
		return nil, fmt.Errorf("%s changed while it was read", path)
	}
	s.mu.Lock()
	s.cache[path] = cachedFile{data: data, size: fi.Size(), mtime: fi.ModTime()}
	s.mu.Unlock()
	return data, nil
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

// lookup maps a requested name to a path. Some PXE ROMs prefix a slash.
func (s *Server) lookup(name string) (string, bool) {
	path, ok := s.files[strings.TrimPrefix(name, "/")]
	return path, ok
}

// sendError sends a TFTP ERROR with err's text.
func sendError(conn *net.UDPConn, code uint16, err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	p := binary.BigEndian.AppendUint16([]byte{0, opERROR}, code)
	conn.Write(append(append(p, msg...), 0))
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

// parseOption parses a numeric option value within [lo, hi].
func parseOption(v string, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		return 0, false
	}
	return min(n, hi), true
}
