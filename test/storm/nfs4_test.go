package storm

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// nfsClient is the NFSv4.2 client of a simulated machine (RFC 8881 and
// RFC 7862 for the minor version; RFC 5531 ONC RPC over TCP with record
// marking; AUTH_SYS as root, as the agent's kernel mounts), just large
// enough to do what the kernel's client does to mount a root and read a
// file from it: EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE, the
// export's lookup, then OPEN and pipelined READs on a session of
// nfsSlots slots, every compound led by SEQUENCE. The kernel client
// cannot run here (this host's kernel has no NFS module) and libnfs's
// tools speak NFSv4.0 only, which the server does not serve.
type nfsClient struct {
	conn      net.Conn
	r         *bufio.Reader
	owner     string // client owner and open owner: one per machine
	xid       uint32
	clientID  uint64
	sessionID [16]byte
	seq       []uint32 // per slot: the next SEQUENCE sequence id
	free      []uint32 // free slots
	maxRead   uint32
	verifier  uint64
	retries   int // compounds sent again after NFS4ERR_DELAY or NFS4ERR_GRACE
	recovered int // state recoveries after the server lost the client's session
}

// NFSv4 operation numbers (RFC 8881 section 18) and the errors the client
// waits out.
const (
	opClose           = 4
	opGetFH           = 10
	opLookup          = 15
	opOpen            = 18
	opPutFH           = 22
	opPutRootFH       = 24
	opRead            = 25
	opExchangeID      = 42
	opCreateSession   = 43
	opSequence        = 53
	opReclaimComplete = 58

	nfs4ErrDelay = 10008
	nfs4ErrGrace = 10013

	nfs4ErrCompleteAlready = 10054
)

// nfsMinorVersion is the minor version the agent mounts (rootnfs.Version
// "4.2").
const nfsMinorVersion = 2

// nfsSlots is how many requests the client keeps in flight, and so how
// many READs of nfsReadChunk are outstanding, as the kernel's readahead
// keeps several.
const nfsSlots = rootQueueDepth

// nfsReadChunk is the size of one READ: the mean READ of the Debian boot
// measured over an NFSv4 root (25.8 MiB in 547 READs, vm
// TestDistroNFSRoot; see rootReadSize).
const nfsReadChunk = 48 << 10

// nfsError is an NFSv4 operation's error status.
type nfsError struct {
	op, status uint32
}

func (e *nfsError) Error() string { return fmt.Sprintf("nfs op %d: status %d", e.op, e.status) }

// waitable reports whether err asks the client to try again later.
func waitable(err error) bool {
	var ne *nfsError
	return errors.As(err, &ne) && (ne.status == nfs4ErrDelay || ne.status == nfs4ErrGrace)
}

// nfsMount opens a session on conn, as a mount does: EXCHANGE_ID,
// CREATE_SESSION and RECLAIM_COMPLETE; owner names the client.
func nfsMount(conn net.Conn, owner string, verifier uint64) (*nfsClient, error) {
	c := &nfsClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), owner: owner, verifier: verifier}
	if err := c.establish(); err != nil {
		return nil, err
	}
	return c, nil
}

// establish gets the client its client ID and a new session.
func (c *nfsClient) establish() error {
	var w xdrWriter
	w.u32(opExchangeID)
	w.u64(c.verifier)
	w.opaque([]byte(c.owner))
	w.u32(0) // flags
	w.u32(0) // SP4_NONE
	w.u32(0) // no implementation id
	rd, err := c.call(w.b, 1)
	if err != nil {
		return fmt.Errorf("EXCHANGE_ID: %w", err)
	}
	if err := rd.op(opExchangeID); err != nil {
		return fmt.Errorf("EXCHANGE_ID: %w", err)
	}
	c.clientID = rd.u64()
	seq := rd.u32()
	if rd.err != nil {
		return fmt.Errorf("EXCHANGE_ID: %w", rd.err)
	}
	if err := c.createSession(seq); err != nil {
		return fmt.Errorf("CREATE_SESSION: %w", err)
	}
	err = c.retry(func() error {
		var w xdrWriter
		w.u32(opReclaimComplete)
		w.u32(0) // rca_one_fs: false
		_, err := c.sequenced(w.b, 1, opReclaimComplete)
		return err
	})
	var ne *nfsError
	if errors.As(err, &ne) && ne.status == nfs4ErrCompleteAlready { // the same client, a new session
		err = nil
	}
	if err != nil {
		return fmt.Errorf("RECLAIM_COMPLETE: %w", err)
	}
	return nil
}

// lostState reports whether err says the server no longer has the
// client's session or state: its lease expired while its requests waited
// (NFS4ERR_BADSESSION, DEADSESSION, STALE_CLIENTID, EXPIRED). The kernel
// client recovers: a new client ID and session, its opens again.
func lostState(err error) bool {
	var ne *nfsError
	return errors.As(err, &ne) && (ne.status == 10052 || ne.status == 10078 || ne.status == 10022 || ne.status == 10011)
}

func (c *nfsClient) createSession(seq uint32) error {
	var w xdrWriter
	w.u32(opCreateSession)
	w.u64(c.clientID)
	w.u32(seq)
	w.u32(0) // flags: no persistence, no back channel on this connection
	// Fore channel: header padding, max request, max response, max
	// cached response, max operations, max requests, no RDMA.
	for _, v := range []uint32{0, 64 << 10, nfsReadChunk + 64<<10, 4 << 10, 8, nfsSlots, 0} {
		w.u32(v)
	}
	for _, v := range []uint32{0, 4 << 10, 4 << 10, 0, 2, 1, 0} { // back channel
		w.u32(v)
	}
	w.u32(0x40000000) // callback program
	w.u32(1)          // one callback security flavour:
	w.u32(0)          // AUTH_NONE
	rd, err := c.call(w.b, 1)
	if err != nil {
		return err
	}
	if err := rd.op(opCreateSession); err != nil {
		return err
	}
	copy(c.sessionID[:], rd.fixed(16))
	rd.u32() // sequence id
	rd.u32() // flags
	rd.u32() // header padding
	rd.u32() // max request
	maxResp := rd.u32()
	rd.u32() // max cached response
	rd.u32() // max operations
	slots := rd.u32()
	if rd.err != nil {
		return rd.err
	}
	slots = min(max(slots, 1), nfsSlots)
	c.maxRead = min(nfsReadChunk, maxResp-4<<10)
	c.seq, c.free = nil, nil
	for s := range slots {
		c.seq = append(c.seq, 1)
		c.free = append(c.free, s)
	}
	return nil
}

// retry runs fn again, after a second, while the server asks to wait
// (NFS4ERR_DELAY, NFS4ERR_GRACE just after its start), as the kernel
// client does, up to a minute.
func (c *nfsClient) retry(fn func() error) error {
	for i := 0; ; i++ {
		err := fn()
		if !waitable(err) || i == 60 {
			return err
		}
		c.retries++
		time.Sleep(time.Second)
	}
}

// lookup returns the file handle of path's components from the pseudo
// root.
func (c *nfsClient) lookup(path ...string) ([]byte, error) {
	var fh []byte
	err := c.retry(func() error {
		var w xdrWriter
		w.u32(opPutRootFH)
		for _, p := range path {
			w.u32(opLookup)
			w.opaque([]byte(p))
		}
		w.u32(opGetFH)
		rd, err := c.sequenced(w.b, 2+len(path), opPutRootFH)
		if err != nil {
			return err
		}
		for range path {
			if err := rd.op(opLookup); err != nil {
				return err
			}
		}
		if err := rd.op(opGetFH); err != nil {
			return err
		}
		fh = rd.opaque()
		return rd.err
	})
	if err != nil {
		return nil, fmt.Errorf("lookup %q: %w", path, err)
	}
	return fh, nil
}

// open opens the file fh for reading and returns its open stateid.
func (c *nfsClient) open(fh []byte) ([]byte, error) {
	var stateid []byte
	err := c.retry(func() error {
		var w xdrWriter
		w.u32(opPutFH)
		w.opaque(fh)
		w.u32(opOpen)
		w.u32(0) // seqid (ignored in 4.1)
		w.u32(1) // OPEN4_SHARE_ACCESS_READ
		w.u32(0) // OPEN4_SHARE_DENY_NONE
		w.u64(c.clientID)
		w.opaque([]byte(c.owner))
		w.u32(0) // OPEN4_NOCREATE
		w.u32(4) // CLAIM_FH
		rd, err := c.sequenced(w.b, 2, opPutFH)
		if err != nil {
			return err
		}
		if err := rd.op(opOpen); err != nil {
			return err
		}
		stateid = rd.fixed(16)
		return rd.err
	})
	if err != nil {
		return nil, fmt.Errorf("OPEN: %w", err)
	}
	return stateid, nil
}

// close closes the open stateid of fh.
func (c *nfsClient) close(fh, stateid []byte) error {
	var w xdrWriter
	w.u32(opPutFH)
	w.opaque(fh)
	w.u32(opClose)
	w.u32(0)
	w.fixed(stateid)
	rd, err := c.sequenced(w.b, 2, opPutFH)
	if err == nil {
		err = rd.op(opClose)
	}
	if err != nil {
		return fmt.Errorf("CLOSE: %w", err)
	}
	return nil
}

// readAll reads size bytes of the open file fh from offset 0 in READs of
// at most c.maxRead, one per slot in flight, and hands each chunk to got
// with its offset. If the server lost the client's state meanwhile, it
// recovers as the kernel client does (a new session, the file opened
// again) and reads again what was not answered. It returns the stateid
// the file is open with at the end.
func (c *nfsClient) readAll(fh, stateid []byte, size int64, got func(off int64, data []byte) error) (int64, []byte, error) {
	type read struct {
		slot uint32
		off  int64
	}
	var todo []int64 // offsets of the READs to send, last first
	for off := int64(0); off < size; off += int64(c.maxRead) {
		todo = append(todo, off)
	}
	slices.Reverse(todo)
	inFlight := map[uint32]read{}
	var n int64
	lost := false
	for len(todo) > 0 || len(inFlight) > 0 {
		for len(todo) > 0 && len(c.free) > 0 && !lost {
			slot, off := c.free[len(c.free)-1], todo[len(todo)-1]
			c.free, todo = c.free[:len(c.free)-1], todo[:len(todo)-1]
			var w xdrWriter
			w.u32(opPutFH)
			w.opaque(fh)
			w.u32(opRead)
			w.fixed(stateid)
			w.u64(uint64(off))
			w.u32(uint32(min(int64(c.maxRead), size-off)))
			xid, err := c.send(c.sequence(slot, 3, w.b))
			if err != nil {
				return n, stateid, err
			}
			inFlight[xid] = read{slot, off}
		}
		if lost && len(inFlight) == 0 {
			if c.recovered++; c.recovered > 10 {
				return n, stateid, fmt.Errorf("READ: server lost the client's state %d times", c.recovered)
			}
			if err := c.establish(); err != nil {
				return n, stateid, fmt.Errorf("recovery: %w", err)
			}
			var err error
			if stateid, err = c.open(fh); err != nil {
				return n, stateid, fmt.Errorf("recovery: %w", err)
			}
			lost = false
			continue
		}
		xid, rd, err := c.reply()
		if err != nil {
			return n, stateid, err
		}
		rq, ok := inFlight[xid]
		if !ok {
			return n, stateid, fmt.Errorf("reply to unknown xid %d", xid)
		}
		delete(inFlight, xid)
		c.free = append(c.free, rq.slot)
		err = c.sequenceDone(rd, rq.slot)
		if err == nil {
			err = rd.op(opPutFH)
		}
		if err == nil {
			err = rd.op(opRead)
		}
		if lostState(err) {
			lost = true
			todo = append(todo, rq.off)
			continue
		}
		if err != nil {
			return n, stateid, fmt.Errorf("READ at %d: %w", rq.off, err)
		}
		rd.u32() // eof
		data := rd.opaque()
		if rd.err != nil {
			return n, stateid, fmt.Errorf("READ at %d: %w", rq.off, rd.err)
		}
		n += int64(len(data))
		if err := got(rq.off, data); err != nil {
			return n, stateid, err
		}
	}
	return n, stateid, nil
}

// destroySession ends the client's session (DESTROY_SESSION), as the
// server does when the client's lease expires.
func (c *nfsClient) destroySession() error {
	var w xdrWriter
	w.u32(44) // DESTROY_SESSION
	w.fixed(c.sessionID[:])
	rd, err := c.call(w.b, 1)
	if err == nil {
		err = rd.op(44)
	}
	return err
}

// sequenced sends ops (nops of them) after a SEQUENCE on a free slot and
// waits for the answer; first is the first op, whose status it checks.
func (c *nfsClient) sequenced(ops []byte, nops int, first uint32) (*xdrReader, error) {
	slot := c.free[len(c.free)-1]
	if _, err := c.send(c.sequence(slot, nops+1, ops)); err != nil {
		return nil, err
	}
	_, rd, err := c.reply()
	if err != nil {
		return nil, err
	}
	if err := c.sequenceDone(rd, slot); err != nil {
		return nil, err
	}
	return rd, rd.op(first)
}

// sequence is a COMPOUND of nops operations: SEQUENCE on slot, then ops.
func (c *nfsClient) sequence(slot uint32, nops int, ops []byte) []byte {
	var w xdrWriter
	w.compoundHeader(nops)
	w.u32(opSequence)
	w.fixed(c.sessionID[:])
	w.u32(c.seq[slot])
	w.u32(slot)
	w.u32(uint32(len(c.seq) - 1)) // highest slot id
	w.u32(0)                      // do not cache
	w.b = append(w.b, ops...)
	return w.b
}

// sequenceDone reads a reply's SEQUENCE result: the slot's sequence
// advances if the server took the request.
func (c *nfsClient) sequenceDone(rd *xdrReader, slot uint32) error {
	if err := rd.op(opSequence); err != nil {
		return err
	}
	c.seq[slot]++
	rd.fixed(16 + 5*4)
	return rd.err
}

// call sends a COMPOUND of nops operations and waits for its reply.
func (c *nfsClient) call(ops []byte, nops int) (*xdrReader, error) {
	var w xdrWriter
	w.compoundHeader(nops)
	w.b = append(w.b, ops...)
	if _, err := c.send(w.b); err != nil {
		return nil, err
	}
	_, rd, err := c.reply()
	return rd, err
}

// send writes one ONC RPC call of NFSv4 COMPOUND with args, in one
// record, and returns its xid.
func (c *nfsClient) send(args []byte) (uint32, error) {
	c.xid++
	var w xdrWriter
	w.u32(0) // record mark, set below
	w.u32(c.xid)
	w.u32(0)      // CALL
	w.u32(2)      // RPC version
	w.u32(100003) // NFS
	w.u32(4)
	w.u32(1) // COMPOUND
	var cred xdrWriter
	cred.u32(0) // stamp
	cred.opaque([]byte("storm"))
	cred.u32(0) // uid root
	cred.u32(0) // gid root
	cred.u32(0) // no more groups
	w.u32(1)    // AUTH_SYS
	w.opaque(cred.b)
	w.u32(0) // verifier AUTH_NONE
	w.u32(0)
	w.b = append(w.b, args...)
	binary.BigEndian.PutUint32(w.b, 1<<31|uint32(len(w.b)-4))
	if _, err := c.conn.Write(w.b); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	return c.xid, nil
}

// reply reads one RPC reply and returns its xid and a reader at its
// first operation's result.
func (c *nfsClient) reply() (uint32, *xdrReader, error) {
	var msg []byte
	for {
		var mark [4]byte
		if _, err := io.ReadFull(c.r, mark[:]); err != nil {
			return 0, nil, fmt.Errorf("reply: %w", err)
		}
		m := binary.BigEndian.Uint32(mark[:])
		n := int(m &^ (1 << 31))
		if len(msg)+n > 4<<20 {
			return 0, nil, fmt.Errorf("reply: record of more than 4 MiB")
		}
		off := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.r, msg[off:]); err != nil {
			return 0, nil, fmt.Errorf("reply: %w", err)
		}
		if m&(1<<31) != 0 {
			break
		}
	}
	rd := &xdrReader{b: msg}
	xid := rd.u32()
	if mtype, stat := rd.u32(), rd.u32(); rd.err == nil && (mtype != 1 || stat != 0) {
		return xid, nil, fmt.Errorf("reply: message type %d, reply status %d (denied)", mtype, stat)
	}
	rd.u32()    // verifier flavour
	rd.opaque() // verifier
	if st := rd.u32(); rd.err == nil && st != 0 {
		return xid, nil, fmt.Errorf("reply: accept status %d", st)
	}
	status := rd.u32()
	rd.opaque() // tag
	rd.u32()    // results
	if rd.err != nil {
		return xid, nil, fmt.Errorf("reply: %w", rd.err)
	}
	rd.status = status
	return xid, rd, nil
}

// xdrWriter appends XDR (RFC 4506).
type xdrWriter struct{ b []byte }

func (w *xdrWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *xdrWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

// fixed appends fixed-length opaque data.
func (w *xdrWriter) fixed(p []byte) {
	w.b = append(w.b, p...)
	w.b = append(w.b, make([]byte, (4-len(p)%4)%4)...)
}

// opaque appends variable-length opaque data (a string too).
func (w *xdrWriter) opaque(p []byte) {
	w.u32(uint32(len(p)))
	w.fixed(p)
}

// compoundHeader starts COMPOUND4args: no tag, the minor version, nops.
func (w *xdrWriter) compoundHeader(nops int) {
	w.u32(0)
	w.u32(nfsMinorVersion)
	w.u32(uint32(nops))
}

// xdrReader reads XDR; the first error sticks and reads return zeros.
type xdrReader struct {
	b      []byte
	err    error
	status uint32 // the COMPOUND's status
}

func (r *xdrReader) fixed(n int) []byte {
	padded := n + (4-n%4)%4
	if r.err != nil || n < 0 || padded > len(r.b) {
		if r.err == nil {
			r.err = io.ErrUnexpectedEOF
		}
		return nil
	}
	p := r.b[:n]
	r.b = r.b[padded:]
	return p
}

func (r *xdrReader) u32() uint32 {
	if p := r.fixed(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *xdrReader) u64() uint64 {
	if p := r.fixed(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *xdrReader) opaque() []byte {
	n := r.u32()
	if n > uint32(len(r.b)) {
		r.err = cmp.Or(r.err, io.ErrUnexpectedEOF)
		return nil
	}
	return r.fixed(int(n))
}

// op reads the next result's operation number and status: an error if
// it is not op or failed (the COMPOUND then ends there).
func (r *xdrReader) op(op uint32) error {
	got, status := r.u32(), r.u32()
	switch {
	case r.err != nil:
		if r.status != 0 {
			return &nfsError{op: op, status: r.status}
		}
		return r.err
	case got != op:
		return fmt.Errorf("result of op %d, want %d", got, op)
	case status != 0:
		return &nfsError{op: op, status: status}
	}
	return nil
}
