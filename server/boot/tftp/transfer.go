package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// transfer sends one file to one client on the transfer's own socket,
// connected to the client (its TID): in lock step (one block, then its
// ACK) or, when the client asked RFC 7440 windowsize, a window of blocks
// per ACK.
type transfer struct {
	conn     *net.UDPConn
	timeout  time.Duration // the longest retransmission timeout
	retries  int           // timeouts at the longest before giving up
	deadline time.Time     // MaxTransferTime
	size     int64

	blksize, window int

	rto, srtt, rttvar time.Duration // RFC 6298
	sent              int           // datagrams sent, retransmissions included
}

// negotiate applies the options the client asked (blksize up to
// maxBlksize, tsize, windowsize) and returns the OACK naming them, nil if
// none was asked (RFC 2347: then the transfer starts with block 1 of 512
// bytes).
func (t *transfer) negotiate(opts map[string]string, maxBlksize int) []byte {
	t.blksize, t.window = 512, 1
	var acked []byte
	add := func(name string, v int64) {
		acked = append(append(append(acked, name...), 0), strconv.FormatInt(v, 10)...)
		acked = append(acked, 0)
	}
	if n, ok := parseOption(opts["blksize"], 8, maxBlksize); ok {
		t.blksize = n
		add("blksize", int64(n))
	}
	if _, ok := opts["tsize"]; ok {
		add("tsize", t.size)
	}
	if n, ok := parseOption(opts["windowsize"], 1, DefaultMaxWindow); ok {
		t.window = n
		add("windowsize", int64(n))
	}
	if acked == nil {
		return nil
	}
	return append([]byte{0, opOACK}, acked...)
}

// run sends oack (if any) as block 0, then r in blocks, and returns the
// file bytes sent. It ends when the last block is acknowledged, the client
// sends an ERROR (errAborted), the client stays silent for the
// retransmissions, the deadline passes or ctx is done.
func (t *transfer) run(ctx context.Context, oack []byte, r io.Reader) (int64, error) {
	stop := context.AfterFunc(ctx, func() { t.conn.SetReadDeadline(time.Now()) })
	defer stop()
	var (
		n       int64
		first   uint64   = 1 // the block pending[0] is (absolute, not wrapped)
		pending [][]byte     // sent, not yet acknowledged
		unsent  int          // pending[len(pending)-unsent:] not sent yet
		last    bool         // the short block that ends the file is pending
	)
	if oack != nil {
		first, pending, unsent = 0, [][]byte{oack}, 1
	}
	buf := make([]byte, 1024)
	var lastSend time.Time
	resent := false // Karn: no round-trip sample from a retransmitted window
	timeouts := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if time.Now().After(t.deadline) {
			return n, ErrTooSlow
		}
		// Fill the window; no data before the OACK is acknowledged.
		for !last && len(pending) < t.window && !(first == 0 && len(pending) > 0) {
			block := first + uint64(len(pending))
			p := make([]byte, 4+t.blksize)
			binary.BigEndian.PutUint16(p, opDATA)
			binary.BigEndian.PutUint16(p[2:], uint16(block))
			m, err := io.ReadFull(r, p[4:])
			if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return n, fmt.Errorf("reading block %d: %w", block, err)
			}
			n += int64(m)
			pending, unsent = append(pending, p[:4+m]), unsent+1
			last = m < t.blksize
		}
		if len(pending) == 0 {
			return n, nil // the last block was acknowledged
		}
		for _, p := range pending[len(pending)-unsent:] {
			if _, err := t.conn.Write(p); err != nil {
				return n, fmt.Errorf("sending: %w", err)
			}
			t.sent++
		}
		if unsent > 0 {
			lastSend = time.Now()
		}
		unsent = 0

		// Wait for an acknowledgement of a pending block.
		t.conn.SetReadDeadline(lastSend.Add(t.rto))
		m, err := t.conn.Read(buf)
		if err != nil {
			var nerr net.Error
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			if !errors.As(err, &nerr) || !nerr.Timeout() {
				continue // ICMP unreachable and such: wait on for the retransmission
			}
			if t.rto >= t.timeout {
				if timeouts++; timeouts > t.retries {
					return n, fmt.Errorf("no acknowledgement of block %d after %d retransmissions", first, t.retries)
				}
			}
			t.rto = min(2*t.rto, t.timeout)
			unsent, resent = len(pending), true // the whole window again
			continue
		}
		if m < 4 {
			continue
		}
		switch binary.BigEndian.Uint16(buf) {
		case opERROR:
			return n, errAborted
		case opACK:
		default:
			continue
		}
		k := binary.BigEndian.Uint16(buf[2:])
		newly := int(k - uint16(first-1)) // blocks this ACK acknowledges
		if newly < 1 || newly > len(pending) {
			// A duplicate or old ACK: never answered in lock step (the
			// Sorcerer's Apprentice, RFC 1123 4.2.3.1). In a window it says
			// the client lost a block: send the rest of the window again,
			// at most once a round trip.
			if t.window > 1 && newly == 0 && time.Since(lastSend) >= max(t.srtt, minRTO/4) {
				unsent, resent = len(pending), true
			}
			continue
		}
		if !resent {
			t.sample(time.Since(lastSend))
		}
		resent, timeouts = false, 0
		first += uint64(newly)
		pending = pending[newly:]
		// An ACK short of the blocks sent says the client lost the next
		// one (RFC 7440): the rest of the window goes again now.
		unsent = len(pending)
	}
}

// sample updates the round-trip estimate and the retransmission timeout
// (RFC 6298), between minRTO and the server's Timeout.
func (t *transfer) sample(rtt time.Duration) {
	if t.srtt == 0 {
		t.srtt, t.rttvar = rtt, rtt/2
	} else {
		t.rttvar = (3*t.rttvar + (t.srtt - rtt).Abs()) / 4
		t.srtt = (7*t.srtt + rtt) / 8
	}
	t.rto = min(max(t.srtt+4*t.rttvar, minRTO), t.timeout)
}
