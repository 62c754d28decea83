package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// fakeKernel plays iscsi_tcp behind NETLINK_ISCSI: it takes its own
// reference to bound sockets, sends login PDUs under its own ITT with
// its own CmdSN, and reports received PDUs as RECV_PDU events.
type fakeKernel struct {
	cmdSN  uint32
	events chan event

	mu      sync.Mutex
	calls   []string
	sent    []*pdu.PDU
	params  map[param]string
	conn    net.Conn
	started chan struct{}
}

func newFakeKernel(cmdSN uint32) *fakeKernel {
	return &fakeKernel{cmdSN: cmdSN, events: make(chan event, 16), params: map[param]string{}, started: make(chan struct{}, 4)}
}

func (f *fakeKernel) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeKernel) stopConn(sid, cid, flag uint32) error {
	f.record(fmt.Sprintf("stop %d:%d flag %d", sid, cid, flag))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
	return nil
}

func (f *fakeKernel) bindConn(sid, cid uint32, fd int) error {
	f.record(fmt.Sprintf("bind %d:%d", sid, cid))
	nfd, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	file := os.NewFile(uintptr(nfd), "bound")
	defer file.Close()
	c, err := net.FileConn(file)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
	go f.receive(c, sid, cid)
	return nil
}

// receive turns the target's PDUs into RECV_PDU events, laid out as the
// kernel does: iscsi_uevent with r.recv_req {sid, cid, recv_handle},
// then header and data.
func (f *fakeKernel) receive(c net.Conn, sid, cid uint32) {
	for {
		p, err := pdu.Read(c, pdu.Limits{})
		if err != nil {
			return
		}
		b := make([]byte, ueventSize, ueventSize+pdu.BHSLength+len(p.Data))
		binary.LittleEndian.PutUint32(b[0:], kevRecvPDU)
		binary.LittleEndian.PutUint32(b[40:], sid)
		binary.LittleEndian.PutUint32(b[44:], cid)
		b = append(append(b, p.Header[:]...), p.Data...)
		e, err := decodeEvent(b)
		if err != nil {
			panic(err)
		}
		f.events <- e
	}
}

func (f *fakeKernel) sendPDU(sid, cid uint32, hdr, data []byte) error {
	f.record(fmt.Sprintf("send_pdu %d:%d", sid, cid))
	p := new(pdu.PDU)
	copy(p.Header[:], hdr)
	p.Data = append([]byte(nil), data...)
	p.SetITT(0x7000 + uint32(len(f.sent))) // the kernel's own task tag
	p.SetU32(pdu.OffCmdSN, f.cmdSN)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, p)
	if f.conn == nil {
		return errors.New("not bound")
	}
	return pdu.Write(f.conn, p, pdu.Limits{})
}

func (f *fakeKernel) setParam(sid, cid uint32, p param, v string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.params[p] = v
	return nil
}

func (f *fakeKernel) startConn(sid, cid uint32) error {
	f.record(fmt.Sprintf("start %d:%d", sid, cid))
	f.started <- struct{}{}
	return nil
}

func (f *fakeKernel) event(timeout time.Duration) (event, error) {
	select {
	case e := <-f.events:
		return e, nil
	case <-time.After(timeout):
		return event{}, os.ErrDeadlineExceeded
	}
}

func (f *fakeKernel) connError(sid uint32) {
	b := make([]byte, ueventSize)
	binary.LittleEndian.PutUint32(b[0:], kevConnError)
	binary.LittleEndian.PutUint32(b[40:], sid)
	binary.LittleEndian.PutUint32(b[48:], 1020) // ISCSI_ERR_CONN_FAILED
	e, _ := decodeEvent(b)
	f.events <- e
}

func (f *fakeKernel) callLog() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, "\n")
}

var testISID = [6]byte{0x80, 9, 8, 7, 6, 5}

func testKeeper(addr string, chap *pdu.CHAP, k kernel) *keeper {
	return &keeper{
		Target: Target{
			Portal:          addr,
			Login:           Config{InitiatorName: testInitiator, TargetName: testTarget, ISID: testISID, CHAP: chap},
			RecoveryTimeout: 2 * time.Second,
			Logger:          hclog.NewNullLogger(),
		},
		SID: 3, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, k: k,
	}
}

// TestKeeperRelogsInAfterConnError: on each CONN_ERROR of its session the
// keeper stops the connection for recovery, binds a new socket, logs in
// through the kernel with mutual CHAP, the same ISID and TSIH 0, sets
// the parameters and starts the connection.
func TestKeeperRelogsInAfterConnError(t *testing.T) {
	addr := serve(t, &pdu.CHAP{User: testCHAP.User, Secret: testCHAP.Secret, TargetUser: testCHAP.TargetUser, TargetSecret: testCHAP.TargetSecret})
	fk := newFakeKernel(4711)
	k := testKeeper(addr, &testCHAP, fk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.run(ctx) }()
	fk.connError(99) // another session's: ignored
	for round := 1; round <= 2; round++ {
		fk.connError(3)
		select {
		case <-fk.started:
		case err := <-done:
			t.Fatalf("run() = %v before the connection was restarted", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: connection not restarted; calls:\n%s", round, fk.callLog())
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("run() = %v, want %v", err, context.Canceled)
	}
	want := "stop 3:0 flag 3\nbind 3:0\n" + strings.Repeat("send_pdu 3:0\n", 4) + "start 3:0"
	if got := fk.callLog(); got != want+"\n"+want {
		t.Errorf("kernel calls:\n%s\nwant twice:\n%s", got, want)
	}
	for _, p := range fk.sent {
		if p.Opcode() != pdu.OpLoginReq || p.ISID() != testISID || p.TSIH() != 0 {
			t.Errorf("sent %s ISID %x TSIH %d; want a login with ISID %x, TSIH 0", p.Opcode(), p.ISID(), p.TSIH(), testISID)
		}
	}
	if fk.params[paramExpStatSN] == "" || fk.params[paramTargetName] != testTarget || fk.params[paramSessRecoveryTmo] != "2" {
		t.Errorf("kernel params = %v", fk.params)
	}
}

// TestKeeperGivesUp: with a wrong secret every attempt is refused, and
// recover ends at the recovery timeout with the target's refusal, having
// released each bound socket.
func TestKeeperGivesUp(t *testing.T) {
	addr := serve(t, &pdu.CHAP{User: testCHAP.User, Secret: testCHAP.Secret})
	wrong := pdu.CHAP{User: testCHAP.User, Secret: "not-the-secret-0123456789"}
	fk := newFakeKernel(1)
	k := testKeeper(addr, &wrong, fk)
	k.Target.RecoveryTimeout = 500 * time.Millisecond
	k.run(canceledAfter(t, 0)) // fills in the defaults
	err := k.recover(context.Background())
	if !errors.Is(err, ErrRecoveryTimeout) || !errors.Is(err, ErrLoginRejected) {
		t.Fatalf("recover() = %v, want %v wrapping %v", err, ErrRecoveryTimeout, ErrLoginRejected)
	}
	log := fk.callLog()
	if binds, stops := strings.Count(log, "bind"), strings.Count(log, "stop"); binds < 2 || stops != binds+1 || strings.Contains(log, "start") {
		t.Errorf("kernel calls:\n%s\nwant attempts each released by a stop, and no start", log)
	}
}

// TestKeeperWaitsForTarget: a target that is down at first (a server
// restart) is dialed again with backoff until it answers.
func TestKeeperWaitsForTarget(t *testing.T) {
	addr := serve(t, nil)
	fk := newFakeKernel(1)
	k := testKeeper(addr, nil, fk)
	k.Target.RecoveryTimeout = 5 * time.Second
	k.run(canceledAfter(t, 0))
	dials := 0
	k.Dial = func(ctx context.Context, a string) (net.Conn, error) {
		if dials++; dials < 3 {
			return nil, errors.New("connection refused")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", a)
	}
	if err := k.recover(context.Background()); err != nil || dials != 3 {
		t.Fatalf("recover() = %v after %d dials, want nil after 3", err, dials)
	}
}

func canceledAfter(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRecvPDUEvent(t *testing.T) {
	resp := pdu.New(pdu.OpLoginResp, 0)
	resp.Data = []byte("a=b\x00")
	hdr, _ := resp.Encode(nil, pdu.Limits{})
	mk := func(payload []byte) event {
		b := make([]byte, ueventSize)
		binary.LittleEndian.PutUint32(b[0:], kevRecvPDU)
		binary.LittleEndian.PutUint32(b[40:], 3)
		e, _ := decodeEvent(append(b, payload...))
		return e
	}
	sid, _, p, err := mk(append(hdr[:pdu.BHSLength:pdu.BHSLength], resp.Data...)).recvPDU()
	if err != nil || sid != 3 || p.Opcode() != pdu.OpLoginResp || !bytes.Equal(p.Data, resp.Data) {
		t.Fatalf("recvPDU() = %d, %v, %v", sid, p, err)
	}
	for _, bad := range [][]byte{hdr[:20], hdr[:pdu.BHSLength]} {
		if _, _, _, err := mk(bad).recvPDU(); err == nil {
			t.Errorf("recvPDU(%d bytes) = nil error", len(bad))
		}
	}
}

func TestHandover(t *testing.T) {
	tg := Target{Portal: "10.200.0.1:3260", Login: Config{InitiatorName: "iqn.i", TargetName: "iqn.t", ISID: testISID, CHAP: &testCHAP},
		RecoveryTimeout: time.Minute}
	var buf bytes.Buffer
	if err := jsonEncode(&buf, newHandover(tg, &Disk{SID: 4, CID: 1})); err != nil {
		t.Fatal(err)
	}
	h, err := readHandover(&buf)
	if err != nil {
		t.Fatal(err)
	}
	k := h.newKeeper()
	if k.SID != 4 || k.CID != 1 || k.Target.Portal != tg.Portal || *k.Target.Login.CHAP != testCHAP ||
		k.Target.Login.ISID != testISID || k.Target.RecoveryTimeout != time.Minute {
		t.Errorf("handover keeper = %+v", k)
	}
	for _, bad := range []string{"", "{}", `{"portal":"x"}`, strings.Repeat(" ", maxHandover+1)} {
		if _, err := readHandover(strings.NewReader(bad)); err == nil {
			t.Errorf("readHandover(%.20q) = nil error", bad)
		}
	}
}

// TestKernelLoginConnLost: a connection error of the session while the
// keeper waits for a login response ends the attempt with ErrConnLost;
// other sessions' events and PDUs are skipped.
func TestKernelLoginConnLost(t *testing.T) {
	fk := newFakeKernel(1)
	fk.connError(8)
	fk.connError(3)
	kp := &kernelPDUs{k: fk, sid: 3, deadline: time.Now().Add(5 * time.Second)}
	if _, err := kp.readPDU(); !errors.Is(err, ErrConnLost) {
		t.Fatalf("readPDU() = %v, want %v", err, ErrConnLost)
	}
	kp.deadline = time.Now().Add(50 * time.Millisecond)
	if _, err := kp.readPDU(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("readPDU() without events = %v, want %v", err, os.ErrDeadlineExceeded)
	}
}
