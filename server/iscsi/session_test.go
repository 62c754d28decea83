package iscsi

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// testSession is a minimal initiator over a real socket.
type testSession struct {
	t      *testing.T
	nc     net.Conn
	lim    pdu.Limits
	cmdSN  uint32
	itt    uint32
	params map[string]string
}

// dialSession logs in without authentication with the given keys, as
// a new session (fresh ISID).
func dialSession(t *testing.T, addr string, keys ...pdu.KV) *testSession {
	t.Helper()
	var isid [6]byte
	binary.BigEndian.PutUint32(isid[2:], uint32(time.Now().UnixNano()))
	return dialISID(t, addr, isid, keys...)
}

func dialISID(t *testing.T, addr string, isid [6]byte, keys ...pdu.KV) *testSession {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	s := &testSession{t: t, nc: nc, cmdSN: 1, params: map[string]string{}}
	kvs := append([]pdu.KV{{Key: "InitiatorName", Value: "iqn.2026-01.org.example:go"}, {Key: "TargetName", Value: testIQN},
		{Key: "AuthMethod", Value: "None"}}, keys...)
	req := loginReq(1, 3, true, kvs...)
	copy(req.Header[8:14], isid[:])
	req.SetU32(pdu.OffCmdSN, s.cmdSN)
	resp := s.roundTrip(req, pdu.Limits{})
	if class, detail := resp.LoginStatus(); class != 0 || !resp.Transit() {
		t.Fatalf("login status %#x/%#x transit %v", class, detail, resp.Transit())
	}
	got, _ := pdu.ParseText(resp.Data)
	for _, kv := range got {
		s.params[kv.Key] = kv.Value
	}
	s.lim = pdu.Limits{MaxDataSegmentLength: 1 << 20, HeaderDigest: s.params["HeaderDigest"] == "CRC32C", DataDigest: s.params["DataDigest"] == "CRC32C"}
	return s
}

func (s *testSession) roundTrip(req *pdu.PDU, l pdu.Limits) *pdu.PDU {
	s.send(req, l)
	return s.recv(l)
}

func (s *testSession) send(p *pdu.PDU, l pdu.Limits) {
	s.t.Helper()
	if err := pdu.Write(s.nc, p, l); err != nil {
		s.t.Fatalf("send %s: %v", p.Opcode(), err)
	}
}

func (s *testSession) recv(l pdu.Limits) *pdu.PDU {
	s.t.Helper()
	p, err := pdu.Read(s.nc, l)
	if err != nil {
		s.t.Fatalf("recv: %v", err)
	}
	return p
}

// command builds a SCSI Command PDU with a fresh ITT and CmdSN.
func (s *testSession) command(cdb []byte, flags byte, edtl int, immediate []byte) *pdu.PDU {
	s.itt++
	p := pdu.New(pdu.OpSCSICommand, flags)
	p.SetITT(s.itt)
	p.SetU32(pdu.OffEDTL, uint32(edtl))
	p.SetU32(pdu.OffCmdSN, s.cmdSN)
	s.cmdSN++
	copy(p.CDB(), cdb)
	p.Data = immediate
	return p
}

func rw16(op byte, lba uint64, blocks uint32) []byte {
	c := make([]byte, 16)
	c[0] = op
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], blocks)
	return c
}

// write sends a WRITE 16 using immediate data, unsolicited Data-Out
// (when the target allows it) and R2T for the rest.
func (s *testSession) write(lba uint64, data []byte) {
	s.t.Helper()
	first, _ := strconv.Atoi(s.params["FirstBurstLength"])
	imm := data[:min(len(data), first, 4096)]
	unsolicited := s.params["InitialR2T"] == "No" && len(imm) < min(first, len(data))
	flags := byte(pdu.FlagWrite)
	if !unsolicited {
		flags |= pdu.FlagFinal
	}
	cmd := s.command(rw16(0x8a, lba, uint32(len(data)/512)), flags, len(data), imm)
	s.send(cmd, s.lim)
	if unsolicited {
		s.dataOut(cmd.ITT(), pdu.ReservedTag, data, len(imm), min(first, len(data))-len(imm))
	}
	for {
		p := s.recv(s.lim)
		switch p.Opcode() {
		case pdu.OpR2T:
			off, n := int(p.U32(pdu.OffBufferOffset)), int(p.U32(pdu.OffDesiredLen))
			s.dataOut(cmd.ITT(), p.TTT(), data, off, n)
		case pdu.OpSCSIResponse:
			if p.Header[3] != 0 {
				s.t.Fatalf("WRITE 16 status %#x sense % x", p.Header[3], p.Data)
			}
			return
		default:
			s.t.Fatalf("unexpected %s during write", p.Opcode())
		}
	}
}

// dataOut sends data[off:off+n] as Data-Out PDUs of at most 8 KiB.
func (s *testSession) dataOut(itt, ttt uint32, data []byte, off, n int) {
	var sn uint32
	for end := off + n; off < end; sn++ {
		m := min(8192, end-off)
		p := pdu.New(pdu.OpDataOut, 0)
		if off+m == end {
			p.SetFlags(pdu.FlagFinal)
		}
		p.SetITT(itt)
		p.SetU32(pdu.OffTTT, ttt)
		p.SetU32(pdu.OffDataSN, sn)
		p.SetU32(pdu.OffBufferOffset, uint32(off))
		p.Data = data[off : off+m]
		s.send(p, s.lim)
		off += m
	}
}

// read returns the Data-In of a READ 16.
func (s *testSession) read(lba uint64, n int) []byte {
	s.t.Helper()
	s.send(s.command(rw16(0x88, lba, uint32(n/512)), pdu.FlagFinal|pdu.FlagRead, n, nil), s.lim)
	var out []byte
	for {
		p := s.recv(s.lim)
		switch {
		case p.Opcode() == pdu.OpDataIn:
			out = append(out, p.Data...)
			if p.Flags()&pdu.FlagStatus != 0 {
				return out
			}
		case p.Opcode() == pdu.OpSCSIResponse:
			s.t.Fatalf("READ 16 status %#x sense % x", p.Header[3], p.Data)
		default:
			s.t.Fatalf("unexpected %s during read", p.Opcode())
		}
	}
}

func TestSessionDataPaths(t *testing.T) {
	tests := []struct {
		name string
		keys []pdu.KV
	}{
		{"r2t_only", []pdu.KV{{Key: "InitialR2T", Value: "Yes"}, {Key: "ImmediateData", Value: "No"}}},
		{"immediate_and_unsolicited", []pdu.KV{{Key: "InitialR2T", Value: "No"}, {Key: "ImmediateData", Value: "Yes"}, {Key: "FirstBurstLength", Value: "65536"}}},
		{"crc32c_digests", []pdu.KV{{Key: "HeaderDigest", Value: "CRC32C"}, {Key: "DataDigest", Value: "CRC32C"}, {Key: "MaxBurstLength", Value: "131072"}}},
	}
	addr := startServer(t, &Server{PingInterval: -1}, &Target{IQN: testIQN, LUN: newFileStore(t, 16<<20)})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dialSession(t, addr, append(tt.keys, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: "16384"})...)
			data := bytes.Repeat([]byte{byte(i + 1), 2, 3, 4, 5, 6, 7}, 1<<20/7+1)[:1<<20]
			s.write(uint64(i)*4096, data)
			if got := s.read(uint64(i)*4096, len(data)); !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes differs from write", len(got))
			}
		})
	}
}

func TestSessionNOPTaskLogout(t *testing.T) {
	addr := startServer(t, &Server{PingInterval: 50 * time.Millisecond}, &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)})
	s := dialSession(t, addr)
	// The target pings: answer one NOP-In with a NOP-Out echoing its TTT.
	var pings int
	nop := pdu.New(pdu.OpNOPOut, pdu.FlagFinal)
	nop.SetImmediate(true)
	nop.SetITT(77)
	nop.SetU32(pdu.OffTTT, pdu.ReservedTag)
	nop.SetU32(pdu.OffCmdSN, s.cmdSN)
	nop.Data = []byte("ping")
	s.send(nop, s.lim)
	for {
		p := s.recv(s.lim)
		if p.Opcode() == pdu.OpNOPIn && p.ITT() == pdu.ReservedTag {
			pings++
			reply := pdu.New(pdu.OpNOPOut, pdu.FlagFinal)
			reply.SetImmediate(true)
			reply.SetITT(pdu.ReservedTag)
			reply.SetU32(pdu.OffTTT, p.TTT())
			s.send(reply, s.lim)
			continue
		}
		if p.Opcode() != pdu.OpNOPIn || p.ITT() != 77 || string(p.Data) != "ping" {
			t.Fatalf("NOP-Out reply = %s ITT %d data %q", p.Opcode(), p.ITT(), p.Data)
		}
		break
	}
	for pings < 2 { // the target pings an idle connection; answer each
		p := s.recv(s.lim)
		if p.Opcode() != pdu.OpNOPIn || p.ITT() != pdu.ReservedTag {
			t.Fatalf("idle connection got %s ITT %#x, want a NOP-In ping", p.Opcode(), p.ITT())
		}
		pings++
		reply := pdu.New(pdu.OpNOPOut, pdu.FlagFinal)
		reply.SetImmediate(true)
		reply.SetITT(pdu.ReservedTag)
		reply.SetU32(pdu.OffTTT, p.TTT())
		s.send(reply, s.lim)
	}
	tmf := pdu.New(pdu.OpTaskMgmtReq, pdu.FlagFinal|5) // LUN RESET
	tmf.SetImmediate(true)
	tmf.SetITT(78)
	tmf.SetU32(pdu.OffCmdSN, s.cmdSN)
	resp := s.skipPings(tmf, &pings)
	if resp.Opcode() != pdu.OpTaskMgmtResp || resp.Header[2] != 0 {
		t.Errorf("LUN RESET = %s response %d, want function complete", resp.Opcode(), resp.Header[2])
	}
	lo := pdu.New(pdu.OpLogoutReq, pdu.FlagFinal)
	lo.SetImmediate(true)
	lo.SetITT(79)
	lo.SetU32(pdu.OffCmdSN, s.cmdSN)
	if resp := s.skipPings(lo, &pings); resp.Opcode() != pdu.OpLogoutResp || resp.Header[2] != 0 {
		t.Errorf("Logout = %s response %d", resp.Opcode(), resp.Header[2])
	}
	if _, err := pdu.Read(s.nc, s.lim); err == nil {
		t.Errorf("connection still open after logout")
	}
}

// skipPings sends req and returns the first response that is not a ping.
func (s *testSession) skipPings(req *pdu.PDU, pings *int) *pdu.PDU {
	s.send(req, s.lim)
	for {
		p := s.recv(s.lim)
		if p.Opcode() == pdu.OpNOPIn && p.ITT() == pdu.ReservedTag {
			*pings++
			continue
		}
		return p
	}
}

func TestProtocolErrorClosesOnlyThatConnection(t *testing.T) {
	addr := startServer(t, &Server{PingInterval: -1}, &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)})
	good := dialSession(t, addr)
	bad := dialSession(t, addr)
	huge := pdu.New(pdu.OpSCSICommand, pdu.FlagFinal|pdu.FlagWrite)
	huge.Header[5], huge.Header[6], huge.Header[7] = 0xff, 0xff, 0xff // 16 MiB data segment announced
	b, _ := huge.Encode(nil, bad.lim)
	bad.nc.Write(b[:pdu.BHSLength])
	if _, err := pdu.Read(bad.nc, bad.lim); err == nil {
		t.Errorf("connection survived a data segment over MaxRecvDataSegmentLength")
	}
	if got := good.read(0, 4096); len(got) != 4096 {
		t.Errorf("other connection: read %d bytes, want 4096", len(got))
	}
}

func TestSessionReinstatement(t *testing.T) {
	addr := startServer(t, &Server{PingInterval: -1}, &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)})
	isid := [6]byte{0x80, 0, 0, 0, 0, 1}
	old := dialISID(t, addr, isid)
	other := dialISID(t, addr, [6]byte{0x80, 0, 0, 0, 0, 2})
	fresh := dialISID(t, addr, isid)
	if _, err := pdu.Read(old.nc, old.lim); err == nil {
		t.Errorf("old connection of a reinstated session still open")
	}
	if got := fresh.read(0, 512); len(got) != 512 {
		t.Errorf("reinstated session read %d bytes, want 512", len(got))
	}
	if got := other.read(0, 512); len(got) != 512 {
		t.Errorf("session with another ISID read %d bytes, want 512", len(got))
	}
}

func TestPendingWritesBounded(t *testing.T) {
	addr := startServer(t, &Server{PingInterval: -1}, &Target{IQN: testIQN, LUN: newFileStore(t, 64<<20)})
	s := dialSession(t, addr, pdu.KV{Key: "InitialR2T", Value: "Yes"}, pdu.KV{Key: "ImmediateData", Value: "No"})
	const edtl = maxTransfer
	for i := 0; i <= maxPendingBytes/edtl; i++ {
		s.send(s.command(rw16(0x8a, 0, edtl/512), pdu.FlagFinal|pdu.FlagWrite, edtl, nil), s.lim)
		p := s.recv(s.lim)
		if i < maxPendingBytes/edtl {
			if p.Opcode() != pdu.OpR2T {
				t.Fatalf("write %d: got %s, want R2T", i, p.Opcode())
			}
			continue
		}
		if p.Opcode() != pdu.OpSCSIResponse || p.Header[3] != statusTaskSetFull {
			t.Errorf("write over the pending budget: %s status %#x, want TASK SET FULL", p.Opcode(), p.Header[3])
		}
	}
}

func TestUnsupportedOpcodeRejected(t *testing.T) {
	addr := startServer(t, &Server{PingInterval: -1}, &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)})
	s := dialSession(t, addr)
	snack := pdu.New(pdu.OpSNACKReq, pdu.FlagFinal)
	snack.SetITT(5)
	p := s.roundTrip(snack, s.lim)
	if p.Opcode() != pdu.OpReject || p.Header[2] != rejectCommandNotSupported || len(p.Data) != pdu.BHSLength {
		t.Fatalf("SNACK at ERL 0 = %s reason %#x, want Reject %#x with the header", p.Opcode(), p.Header[2], rejectCommandNotSupported)
	}
	if got := s.read(0, 512); len(got) != 512 {
		t.Errorf("after Reject: read %d bytes, want 512", len(got))
	}
}

// slowSyncStore blocks Sync until release is closed.
type slowSyncStore struct {
	*memStore
	release chan struct{}
}

func (s slowSyncStore) Sync() error { <-s.release; return nil }

func TestSlowSyncDoesNotBlockReads(t *testing.T) {
	store := slowSyncStore{&memStore{b: make([]byte, 1<<20)}, make(chan struct{})}
	addr := startServer(t, &Server{PingInterval: -1}, &Target{IQN: testIQN, LUN: store})
	s := dialSession(t, addr)
	sync := s.command([]byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, pdu.FlagFinal, 0, nil)
	s.send(sync, s.lim)
	if got := s.read(0, 4096); len(got) != 4096 {
		t.Fatalf("read during SYNCHRONIZE CACHE: %d bytes", len(got))
	}
	close(store.release)
	p := s.recv(s.lim)
	if p.Opcode() != pdu.OpSCSIResponse || p.ITT() != sync.ITT() || p.Header[3] != 0 {
		t.Errorf("SYNCHRONIZE CACHE answer = %s ITT %d status %#x", p.Opcode(), p.ITT(), p.Header[3])
	}
}

func TestMaxConns(t *testing.T) {
	addr := startServer(t, &Server{PingInterval: -1, MaxConns: 1}, &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)})
	first := dialSession(t, addr)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := pdu.Read(nc, pdu.Limits{}); err == nil {
		t.Errorf("connection over MaxConns was served")
	}
	if got := first.read(0, 512); len(got) != 512 {
		t.Errorf("first connection read %d bytes, want 512", len(got))
	}
}

// logout sends a Logout Request closing the session and waits for the
// connection to end.
func (s *testSession) logout() {
	s.t.Helper()
	lo := pdu.New(pdu.OpLogoutReq, pdu.FlagFinal)
	lo.SetImmediate(true)
	lo.SetITT(99)
	lo.SetU32(pdu.OffCmdSN, s.cmdSN)
	var pings int
	if resp := s.skipPings(lo, &pings); resp.Opcode() != pdu.OpLogoutResp || resp.Header[2] != 0 {
		s.t.Fatalf("Logout = %s response %d", resp.Opcode(), resp.Header[2])
	}
}

func TestSessionEndedTellsLogoutFromDrop(t *testing.T) {
	ended := make(chan bool, 4)
	srv := &Server{}
	tg := &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20), SessionEnded: func(loggedOut bool) { ended <- loggedOut }}
	addr := startServer(t, srv, tg)
	wait := func(want bool) {
		t.Helper()
		select {
		case got := <-ended:
			if got != want {
				t.Fatalf("SessionEnded(loggedOut = %v), want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("SessionEnded not called")
		}
		// The ended session is no longer counted when the hook runs.
		if !srv.RemoveTargetIfIdle(testIQN) {
			t.Fatal("RemoveTargetIfIdle = false after SessionEnded")
		}
		if err := srv.AddTarget(tg); err != nil {
			t.Fatal(err)
		}
	}

	dialSession(t, addr).logout()
	wait(true)

	s := dialSession(t, addr)
	s.nc.Close() // the initiator vanishes without a logout
	wait(false)

	s = dialSession(t, addr)
	srv.RemoveTarget(testIQN) // the server ends it
	wait(false)

	d := dialSession(t, addr, pdu.KV{Key: "SessionType", Value: "Discovery"})
	d.nc.Close()
	select {
	case got := <-ended:
		t.Fatalf("discovery session: SessionEnded(%v) called", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestIdleMeansNothingMoves: a connection is closed once nothing moved on
// it for three ping intervals (a dead initiator), but not while its
// initiator is still taking a read through a slow path, the data and the
// pings queued at the target's side (a slow tunnel in a boot storm).
func TestIdleMeansNothingMoves(t *testing.T) {
	const ping = 200 * time.Millisecond
	addr := startServer(t, &Server{PingInterval: ping}, &Target{IQN: testIQN, LUN: newFileStore(t, 64<<20)})

	t.Run("reader behind a slow path stays", func(t *testing.T) {
		s := dialSession(t, slowPath(t, addr, 16<<10, 50*time.Millisecond)) // ~320 KB/s towards the initiator
		s.nc.SetDeadline(time.Now().Add(time.Minute))
		const n = 1 << 20
		start := time.Now()
		if got := s.readAnsweringPings(0, n); len(got) != n {
			t.Fatalf("read %d of %d bytes", len(got), n)
		}
		if took := time.Since(start); took < 3*ping {
			t.Fatalf("the read took %s, not longer than the idle limit %s: the path is not slow enough to test", took, 3*ping)
		}
		// Still connected: a closed connection delivers what it had queued
		// and ends there.
		if got := s.readAnsweringPings(0, 4096); len(got) != 4096 {
			t.Fatalf("second read: %d bytes", len(got))
		}
	})

	t.Run("silent initiator closed", func(t *testing.T) {
		s := dialSession(t, addr)
		s.nc.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		for {
			if _, err := pdu.Read(s.nc, s.lim); err != nil { // pings, never answered
				break
			}
		}
		if took := time.Since(start); took < 3*ping || took > 5*time.Second {
			t.Fatalf("silent connection closed after %s, want just after %s", took, 3*ping)
		}
	})
}

// readAnsweringPings is read, answering the target's pings as they come.
func (s *testSession) readAnsweringPings(lba uint64, n int) []byte {
	s.t.Helper()
	s.send(s.command(rw16(0x88, lba, uint32(n/512)), pdu.FlagFinal|pdu.FlagRead, n, nil), s.lim)
	var out []byte
	for {
		p := s.recv(s.lim)
		switch {
		case p.Opcode() == pdu.OpNOPIn && p.ITT() == pdu.ReservedTag:
			reply := pdu.New(pdu.OpNOPOut, pdu.FlagFinal)
			reply.SetImmediate(true)
			reply.SetITT(pdu.ReservedTag)
			reply.SetU32(pdu.OffTTT, p.TTT())
			s.send(reply, s.lim)
		case p.Opcode() == pdu.OpDataIn:
			out = append(out, p.Data...)
			if p.Flags()&pdu.FlagStatus != 0 {
				return out
			}
		default:
			s.t.Fatalf("unexpected %s during read", p.Opcode())
		}
	}
}

// slowPath relays connections to addr, passing at most chunk bytes every
// pause towards the client, and returns its address.
func slowPath(t *testing.T, addr string, chunk int, pause time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", addr)
			if err != nil {
				client.Close()
				return
			}
			server.(*net.TCPConn).SetReadBuffer(chunk) // what the path cannot take yet waits at the target
			t.Cleanup(func() { client.Close(); server.Close() })
			go io.Copy(server, client)
			go func() {
				buf := make([]byte, chunk)
				for {
					n, err := server.Read(buf)
					if n > 0 {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						client.Close()
						return
					}
					time.Sleep(pause)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// OnCommand tells each command's class and the data it moved, as a
// size histogram of reads and writes needs.
func TestOnCommandSizes(t *testing.T) {
	type call struct {
		op    string
		bytes int
	}
	var mu sync.Mutex
	var calls []call
	srv := &Server{PingInterval: -1, OnCommand: func(op string, bytes int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{op, bytes})
	}}
	addr := startServer(t, srv, &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)})
	s := dialSession(t, addr)
	s.write(8, make([]byte, 8192))
	s.read(0, 65536)
	s.read(64, 4096)
	mu.Lock()
	defer mu.Unlock()
	var got []call
	for _, c := range calls {
		if c.op == OpRead || c.op == OpWrite {
			got = append(got, c)
		}
	}
	want := []call{{OpWrite, 8192}, {OpRead, 65536}, {OpRead, 4096}}
	if !slices.Equal(got, want) {
		t.Errorf("reads and writes seen by OnCommand = %v, want %v", got, want)
	}
}
