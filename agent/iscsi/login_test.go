package iscsi

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/iscsi/pdu"

	target "github.com/sealroot/sealroot/server/iscsi"
)

func TestCHAPResponseGolden(t *testing.T) {
	// Golden values from `printf '\x01secret\x01\x02\x03\x04\x05' | md5sum`.
	tests := []struct {
		name      string
		id        byte
		secret    string
		challenge []byte
		want      string
	}{
		{"short", 1, "secret", []byte{1, 2, 3, 4, 5}, "ad554409dd428bd604dbd0241164a508"},
		{"zero_challenge", 0xff, "sealroot-chap-secret", make([]byte, 16), "a6353f4ab36803762e239a2305daa86a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(pdu.CHAPResponse(tt.id, tt.secret, tt.challenge)); got != tt.want {
				t.Errorf("pdu.CHAPResponse() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDecodeBinary(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // hex
		err      error
	}{
		{"hex", "0x0a0B", "0a0b", nil},
		{"odd_hex", "0xabc", "0abc", nil},
		{"base64", "0bAQID", "010203", nil},
		{"no_prefix", "abcd", "", ErrLoginProtocol},
		{"short", "0x", "", ErrLoginProtocol},
		{"bad_hex", "0xzz", "", ErrLoginProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := decodeBinary(tt.in)
			if !errors.Is(err, tt.err) || hex.EncodeToString(b) != tt.want {
				t.Errorf("decodeBinary(%q) = %x, %v; want %s, %v", tt.in, b, err, tt.want, tt.err)
			}
		})
	}
}

const (
	testTarget    = "iqn.2026-01.org.sealroot:test-root"
	testInitiator = "iqn.2026-01.org.sealroot:machine-a"
)

var testCHAP = pdu.CHAP{User: "machine-a", Secret: "initiator-secret-0123456789", TargetUser: "sealroot", TargetSecret: "target-secret-0123456789ab"}

// serve runs sealroot's own target on a loopback port with one target.
func serve(t *testing.T, auth *pdu.CHAP) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lun.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := target.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := &target.Server{Logger: hclog.New(&hclog.LoggerOptions{Output: testLog{t}, Level: hclog.Info})}
	if err := srv.AddTarget(&target.Target{IQN: testTarget, LUN: store, Auth: auth}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func dialLogin(t *testing.T, addr string, cfg Config) (*Session, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Login(ctx, conn, cfg)
}

func TestLoginAgainstSealrootTarget(t *testing.T) {
	mutual := &pdu.CHAP{User: testCHAP.User, Secret: testCHAP.Secret, TargetUser: testCHAP.TargetUser, TargetSecret: testCHAP.TargetSecret}
	oneWay := &pdu.CHAP{User: testCHAP.User, Secret: testCHAP.Secret}
	wrongSecret, wrongTarget, wrongTargetUser, oneWayCfg := testCHAP, testCHAP, testCHAP, testCHAP
	wrongSecret.Secret = "not-the-secret-0123456789"
	wrongTarget.TargetSecret = "impostor-secret-0123456789"
	wrongTargetUser.TargetUser = "someone-else"
	oneWayCfg.TargetUser, oneWayCfg.TargetSecret = "", ""
	tests := []struct {
		name   string
		auth   *pdu.CHAP
		chap   *pdu.CHAP
		digest bool
		want   error
		status uint16
	}{
		{"mutual_chap", mutual, &testCHAP, false, nil, 0},
		{"mutual_chap_header_digest", mutual, &testCHAP, true, nil, 0},
		{"one_way_chap", oneWay, &oneWayCfg, false, nil, 0},
		{"no_auth", nil, nil, false, nil, 0},
		{"wrong_initiator_secret", mutual, &wrongSecret, false, ErrLoginRejected, 0x0201},
		{"wrong_target_secret", mutual, &wrongTarget, false, ErrTargetAuth, 0},
		{"wrong_target_user", mutual, &wrongTargetUser, false, ErrTargetAuth, 0},
		{"target_without_mutual", oneWay, &testCHAP, false, ErrLoginRejected, 0x0201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, tt.auth)
			s, err := dialLogin(t, addr, Config{
				InitiatorName: testInitiator, TargetName: testTarget, CHAP: tt.chap,
				HeaderDigest: tt.digest, ISID: [6]byte{0x80, 1, 2, 3, 4, 5}, CmdSN: 1,
			})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Login() = %v, want %v", err, tt.want)
			}
			var se *StatusError
			if tt.status != 0 && (!errors.As(err, &se) || uint16(se.Class)<<8|uint16(se.Detail) != tt.status) {
				t.Fatalf("Login() = %v, want status %#04x", err, tt.status)
			}
			if err != nil {
				return
			}
			p := s.Params
			if s.TSIH == 0 || s.CmdSN != 1 || p.HeaderDigest != tt.digest || p.DataDigest || p.ErrorRecoveryLevel != 0 || p.TPGT != 1 {
				t.Errorf("session = %+v", s)
			}
			if p.MaxXmitDataSegmentLength != 256<<10 || p.InitialR2T || !p.ImmediateData || p.FirstBurstLength > p.MaxBurstLength {
				t.Errorf("params = %+v", p)
			}
		})
	}
}

// TestLoginRefusesTargetSkippingAuth: a rogue target that answers
// AuthMethod=None to our CHAP offer is refused before anything else.
func TestLoginRefusesTargetSkippingAuth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := pdu.Read(c, pdu.Limits{})
		if err != nil {
			return
		}
		resp := pdu.New(pdu.OpLoginResp, 0)
		resp.SetITT(req.ITT())
		resp.SetLoginStages(true, pdu.StageSecurity, pdu.StageOperational)
		resp.Data = pdu.EncodeText([]pdu.KV{{Key: "AuthMethod", Value: "None"}})
		pdu.Write(c, resp, pdu.Limits{})
	}()
	_, err = dialLogin(t, ln.Addr().String(), Config{InitiatorName: testInitiator, TargetName: testTarget, CHAP: &testCHAP})
	if !errors.Is(err, ErrTargetAuth) {
		t.Fatalf("Login() = %v, want %v", err, ErrTargetAuth)
	}
}
