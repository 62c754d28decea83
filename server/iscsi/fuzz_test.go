package iscsi

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// memStore is an in-memory BackingStore.
type memStore struct {
	mu sync.Mutex
	b  []byte
}

func (m *memStore) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}

func (m *memStore) Size() int64 { return int64(len(m.b)) }
func (m *memStore) Sync() error { return nil }
func (m *memStore) Punch(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.b[off : off+n])
	return nil
}

// fuzzSeeds are byte streams an initiator might send: a login, then
// commands of every kind.
func fuzzSeeds() [][]byte {
	enc := func(ps ...*pdu.PDU) []byte {
		var b []byte
		for _, p := range ps {
			b, _ = p.Encode(b, pdu.Limits{})
		}
		return b
	}
	login := loginReq(1, 3, true, pdu.KV{Key: "InitiatorName", Value: "iqn.x"}, pdu.KV{Key: "TargetName", Value: testIQN},
		pdu.KV{Key: "InitialR2T", Value: "No"})
	s := &testSession{cmdSN: 0}
	read := s.command(rw16(0x88, 0, 8), pdu.FlagFinal|pdu.FlagRead, 4096, nil)
	write := s.command(rw16(0x8a, 1, 2), pdu.FlagWrite, 1024, make([]byte, 512))
	data := pdu.New(pdu.OpDataOut, pdu.FlagFinal)
	data.SetITT(write.ITT())
	data.SetU32(pdu.OffTTT, pdu.ReservedTag)
	data.SetU32(pdu.OffBufferOffset, 512)
	data.Data = make([]byte, 512)
	inq := s.command([]byte{0x12, 1, 0x83, 0, 255, 0}, pdu.FlagFinal|pdu.FlagRead, 255, nil)
	nop := pdu.New(pdu.OpNOPOut, pdu.FlagFinal)
	nop.SetITT(9)
	text := pdu.New(pdu.OpTextReq, pdu.FlagFinal)
	text.SetITT(10)
	text.Data = pdu.EncodeText([]pdu.KV{{Key: "SendTargets", Value: "All"}})
	tmf := pdu.New(pdu.OpTaskMgmtReq, pdu.FlagFinal|1)
	tmf.SetImmediate(true)
	logout := pdu.New(pdu.OpLogoutReq, pdu.FlagFinal)
	logout.SetImmediate(true)
	return [][]byte{
		enc(login, read, write, data, inq, nop, text, tmf, logout),
		enc(login, write, tmf, data),
		enc(loginReq(0, 1, false, pdu.KV{Key: "InitiatorName", Value: "iqn.x"}, pdu.KV{Key: "TargetName", Value: testIQN}, pdu.KV{Key: "AuthMethod", Value: "CHAP"})),
	}
}

// panicWatch is a log sink that remembers a recovered panic.
type panicWatch struct {
	mu  sync.Mutex
	msg string
}

func (w *panicWatch) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("panicked")) {
		w.mu.Lock()
		w.msg = string(p)
		w.mu.Unlock()
	}
	return len(p), nil
}

func FuzzConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		watch := &panicWatch{}
		srv := &Server{PingInterval: -1, Logger: hclog.New(&hclog.LoggerOptions{Output: watch, Level: hclog.Error})}
		if err := srv.AddTarget(&Target{IQN: testIQN, LUN: &memStore{b: make([]byte, 64<<10)}}); err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		c := newConn(srv, server)
		done := make(chan struct{})
		go func() { defer close(done); c.serve(context.Background()) }()
		go io.Copy(io.Discard, client)
		client.Write(in)
		client.Close()
		<-done
		if watch.msg != "" && !strings.Contains(watch.msg, "io: read/write on closed pipe") {
			t.Fatalf("connection panicked: %s", watch.msg)
		}
	})
}
