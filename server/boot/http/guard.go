package http

import (
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what one client of the boot HTTP server can hold. Zero
// fields mean their defaults.
type Limits struct {
	// ConnsPerSource is how many connections one source address may hold;
	// further ones are closed at once. Default 8.
	ConnsPerSource int
	// StallTimeout cuts a connection whose client accepts no ProgressChunk
	// of a response within it: a stalled reader, not a slow one (any
	// client taking ProgressChunk bytes per StallTimeout finishes).
	// Default 30s.
	StallTimeout time.Duration
	// Downloads is how many artifact downloads may run at once; further
	// ones wait for a slot (DownloadWait) and then are answered 503 with
	// a Retry-After. Default 128.
	Downloads int
	// DownloadWait is how long a download that finds every slot taken
	// waits for one, in the order such downloads arrived, before it is
	// answered 503; at most 8 times Downloads wait at once, further ones
	// are answered at once. Default 20s; negative: none waits.
	DownloadWait time.Duration
}

// Defaults for Limits.
const (
	DefaultConnsPerSource = 8
	DefaultStallTimeout   = 30 * time.Second
	DefaultDownloads      = 128
	DefaultDownloadWait   = 20 * time.Second
	// waitingPerDownload bounds the downloads waiting for a slot: this
	// many per slot.
	waitingPerDownload = 8
	// ProgressChunk is the unit of progress a response must make per
	// StallTimeout. Bytes count once the kernel took them, so a client
	// that stops acknowledging is cut once its socket buffer is full.
	ProgressChunk = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.ConnsPerSource == 0 {
		l.ConnsPerSource = DefaultConnsPerSource
	}
	if l.StallTimeout == 0 {
		l.StallTimeout = DefaultStallTimeout
	}
	if l.Downloads == 0 {
		l.Downloads = DefaultDownloads
	}
	if l.DownloadWait == 0 {
		l.DownloadWait = DefaultDownloadWait
	}
	return l
}

// Counts are what the guard refused and cut since Serve started.
type Counts struct {
	Refused uint64 // connections closed at accept: their source held ConnsPerSource
	Stalled uint64 // responses cut: no progress within StallTimeout
	Busy    uint64 // downloads answered 503: Downloads were running
}

// guardListener applies Limits to the connections of a listener.
type guardListener struct {
	net.Listener
	limits Limits

	refused, stalled atomic.Uint64
	busy             *atomic.Uint64 // the download gate's count, or nil

	mu    sync.Mutex
	conns map[netip.Addr]int // guarded by mu
}

func newGuardListener(ln net.Listener, l Limits) *guardListener {
	return &guardListener{Listener: ln, limits: l.withDefaults(), conns: make(map[netip.Addr]int)}
}

// Accept returns the next connection within its source's limit; it closes
// the others itself.
func (g *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := remoteAddr(c)
		if !g.add(src) {
			g.refused.Add(1)
			c.Close()
			continue
		}
		return &guardConn{Conn: c, g: g, src: src}, nil
	}
}

func (g *guardListener) add(a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns[a] >= g.limits.ConnsPerSource {
		return false
	}
	g.conns[a]++
	return true
}

func (g *guardListener) drop(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns[a] <= 1 {
		delete(g.conns, a)
	} else {
		g.conns[a]--
	}
}

func (g *guardListener) counts() Counts {
	c := Counts{Refused: g.refused.Load(), Stalled: g.stalled.Load()}
	if g.busy != nil {
		c.Busy = g.busy.Load()
	}
	return c
}

func remoteAddr(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// guardConn counts against its source until closed, and gives every
// ProgressChunk written StallTimeout to go out.
type guardConn struct {
	net.Conn
	g      *guardListener
	src    netip.Addr
	closed sync.Once
}

func (c *guardConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() { c.g.drop(c.src) })
	return err
}

func (c *guardConn) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), ProgressChunk)]
		c.Conn.SetWriteDeadline(time.Now().Add(c.g.limits.StallTimeout))
		m, err := c.Conn.Write(chunk)
		n += m
		if err != nil {
			return n, c.stalled(err)
		}
		p = p[m:]
	}
	return n, nil
}

// ReadFrom sends r in chunks, each with its own deadline, keeping the
// sendfile path for files (net/http hands ServeContent's file here).
func (c *guardConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{c}, r)
	}
	f, remain := r, int64(-1)
	if lr, ok := r.(*io.LimitedReader); ok {
		f, remain = lr.R, lr.N
		defer func() { lr.N = remain }()
	}
	var n int64
	for remain != 0 {
		size := int64(ProgressChunk)
		if remain > 0 {
			size = min(size, remain)
		}
		c.Conn.SetWriteDeadline(time.Now().Add(c.g.limits.StallTimeout))
		m, err := rf.ReadFrom(&io.LimitedReader{R: f, N: size})
		n += m
		if remain > 0 {
			remain -= m
		}
		if err != nil {
			return n, c.stalled(err)
		}
		if m < size {
			return n, nil // r is done
		}
	}
	return n, nil
}

// stalled counts a write cut by the stall deadline.
func (c *guardConn) stalled(err error) error {
	if os.IsTimeout(err) {
		c.g.stalled.Add(1)
	}
	return err
}
