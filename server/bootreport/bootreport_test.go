package bootreport

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

const machineID = "00000000000000000000000000000000000000000000000000000000000000aa"

type onePeer struct{}

func (onePeer) PeerAddr(net.Addr) (string, bool) { return machineID, true }

type secretValues map[string][]byte

func (s secretValues) RedactionValues(context.Context, string) (map[string][]byte, error) {
	return s, nil
}

// newReceiver serves a Receiver over a real store on loopback, every
// connection taken as machineID's tunnel peer; send writes raw bytes and
// returns the answer.
func newReceiver(t *testing.T) (*Receiver, *store.DB, func(body string) string) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.CreateMachine(context.Background(), &store.Machine{ID: machineID, Name: "m", State: store.StateApproved,
		EKPublic: []byte{1}, AKPublic: []byte{2}, Policy: store.PolicyPinned})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Peers: onePeer{}, Store: db, Secrets: secretValues{"pw": []byte("hunter2")}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	send := func(body string) string {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, body)
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		return string(b)
	}
	return r, db, send
}

// Malformed and oversized reports are refused and counted, nothing is
// stored; a good one is stored with the machine's secret redacted.
func TestReceiver(t *testing.T) {
	r, db, send := newReceiver(t)
	ctx := context.Background()
	for name, body := range map[string]string{
		"garbage":   "\x00\x01garbage",
		"bad_stage": `{"stages":[{"name":"../etc","ms":1}]}`,
		"oversized": `{"stages":[],"log":"` + strings.Repeat("a", wire.MaxReportSize) + `"}`,
	} {
		if got := send(body); got != "error\n" && got != "" {
			t.Errorf("%s: answer %q, want error", name, got)
		}
	}
	if logs, _ := db.BootLogs(ctx, machineID); len(logs) != 0 {
		t.Fatalf("refused reports stored: %+v", logs)
	}
	if got := r.Counts()["bad"]; got != 3 {
		t.Errorf("bad count = %d, want 3", got)
	}
	body, err := wire.EncodeBootReport(&wire.BootReport{Stages: []wire.StageTiming{{Name: "root", Duration: time.Second}},
		Failed: "root", Error: "login with hunter2 refused", Log: "x hunter2 y\n"})
	if err != nil {
		t.Fatal(err)
	}
	if got := send(string(body)); got != "ok\n" {
		t.Fatalf("good report: answer %q", got)
	}
	logs, err := db.BootLogs(ctx, machineID)
	if err != nil || len(logs) != 1 {
		t.Fatalf("BootLogs = %d, %v", len(logs), err)
	}
	if l := logs[0]; l.Log != "x "+Redacted+" y\n" || l.Error != "login with "+Redacted+" refused" || l.Failed != "root" {
		t.Errorf("stored log = %+v, want the secret redacted", l)
	}
}
