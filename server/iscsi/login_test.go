package iscsi

import (
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// errTargetNotAuthenticated is the test initiator's verdict when the
// target's mutual CHAP answer does not match the secret it expects.
var errTargetNotAuthenticated = errors.New("test initiator: target failed mutual CHAP")

// chapInitiator drives a login state machine as an initiator would.
type chapInitiator struct {
	name, target       string
	authMethod         string // AuthMethod offered; default CHAP
	user, secret       string
	mutual             bool
	expectTargetSecret string
	reflect            bool // send the target's own challenge back
	skipSecurity       bool
}

func loginReq(csg, nsg int, transit bool, kvs ...pdu.KV) *pdu.PDU {
	p := pdu.New(pdu.OpLoginReq, 0)
	p.SetImmediate(true)
	p.SetLoginStages(transit, csg, nsg)
	p.Data = pdu.EncodeText(kvs)
	return p
}

func (ci chapInitiator) run(l *login) error {
	step := func(req *pdu.PDU) ([]pdu.KV, bool, error) {
		resp, done, err := l.step(req)
		if err != nil {
			return nil, false, err
		}
		kvs, err := pdu.ParseText(resp.Data)
		return kvs, done, err
	}
	ident := []pdu.KV{{Key: "InitiatorName", Value: ci.name}, {Key: "SessionType", Value: "Normal"}, {Key: "TargetName", Value: ci.target}}
	if ci.skipSecurity {
		_, _, err := step(loginReq(1, 3, true, append(ident, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: "65536"})...))
		return err
	}
	am := ci.authMethod
	if am == "" {
		am = "CHAP"
	}
	if _, _, err := step(loginReq(0, 1, false, append(ident, pdu.KV{Key: "AuthMethod", Value: am})...)); err != nil {
		return err
	}
	kvs, _, err := step(loginReq(0, 1, false, pdu.KV{Key: "CHAP_A", Value: "5"}))
	if err != nil {
		return err
	}
	idS, _ := pdu.Lookup(kvs, "CHAP_I")
	cS, _ := pdu.Lookup(kvs, "CHAP_C")
	id, _ := strconv.Atoi(idS)
	challenge, err := decodeCHAPValue(cS)
	if err != nil {
		return err
	}
	reply := []pdu.KV{{Key: "CHAP_N", Value: ci.user}, {Key: "CHAP_R", Value: pdu.EncodeBinary(pdu.CHAPResponse(byte(id), ci.secret, challenge))}}
	myChallenge := []byte("initiator-challenge-0123456789ab")
	if ci.reflect {
		myChallenge = challenge
	}
	if ci.mutual {
		reply = append(reply, pdu.KV{Key: "CHAP_I", Value: "7"}, pdu.KV{Key: "CHAP_C", Value: pdu.EncodeBinary(myChallenge)})
	}
	kvs, _, err = step(loginReq(0, 1, true, reply...))
	if err != nil {
		return err
	}
	if ci.mutual {
		r, _ := pdu.Lookup(kvs, "CHAP_R")
		got, err := decodeCHAPValue(r)
		if err != nil || !equalConstantTime(got, pdu.CHAPResponse(7, ci.expectTargetSecret, myChallenge)) {
			return errTargetNotAuthenticated
		}
	}
	_, done, err := step(loginReq(1, 3, true, pdu.KV{Key: "HeaderDigest", Value: "CRC32C,None"}))
	if err == nil && !done {
		return errors.New("test initiator: login not complete")
	}
	return err
}

func TestLoginCHAP(t *testing.T) {
	const user, secret, tuser, tsecret = "machine-a", "initiator-secret-0123", "sealroot", "target-secret-456789"
	ok := chapInitiator{name: "iqn.2026-01.org.example:a", target: testIQN, user: user, secret: secret}
	tests := []struct {
		name    string
		auth    *pdu.CHAP
		ci      func(chapInitiator) chapInitiator
		allowed bool
		want    error
	}{
		{"chap_success", &pdu.CHAP{User: user, Secret: secret}, func(c chapInitiator) chapInitiator { return c }, true, nil},
		{"wrong_secret", &pdu.CHAP{User: user, Secret: secret}, func(c chapInitiator) chapInitiator { c.secret = "guess"; return c }, true, ErrAuthFailed},
		{"wrong_user", &pdu.CHAP{User: user, Secret: secret}, func(c chapInitiator) chapInitiator { c.user = "machine-b"; return c }, true, ErrAuthFailed},
		{"no_auth_when_required", &pdu.CHAP{User: user, Secret: secret}, func(c chapInitiator) chapInitiator { c.authMethod = "None"; return c }, true, ErrAuthFailed},
		{"security_stage_skipped", &pdu.CHAP{User: user, Secret: secret}, func(c chapInitiator) chapInitiator { c.skipSecurity = true; return c }, true, ErrAuthFailed},
		{"mutual_success", &pdu.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: tsecret},
			func(c chapInitiator) chapInitiator { c.mutual, c.expectTargetSecret = true, tsecret; return c }, true, nil},
		{"mutual_wrong_target_secret", &pdu.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: "impostor-secret-0000"},
			func(c chapInitiator) chapInitiator { c.mutual, c.expectTargetSecret = true, tsecret; return c }, true, errTargetNotAuthenticated},
		{"mutual_required_not_requested", &pdu.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: tsecret},
			func(c chapInitiator) chapInitiator { return c }, true, ErrAuthFailed},
		{"mutual_without_target_secret", &pdu.CHAP{User: user, Secret: secret},
			func(c chapInitiator) chapInitiator { c.mutual = true; return c }, true, ErrAuthFailed},
		{"reflected_challenge", &pdu.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: tsecret},
			func(c chapInitiator) chapInitiator {
				c.mutual, c.reflect, c.expectTargetSecret = true, true, tsecret
				return c
			}, true, ErrAuthFailed},
		{"initiator_not_allowed", &pdu.CHAP{User: user, Secret: secret}, func(c chapInitiator) chapInitiator { return c }, false, ErrNotAuthorized},
		{"unknown_target", nil, func(c chapInitiator) chapInitiator { c.target = "iqn.2026-01.org.sealroot:other"; return c }, true, ErrTargetNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &Server{}
			tg := &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20), Auth: tt.auth,
				AllowInitiator: func(net.Addr, string) bool { return tt.allowed }}
			if err := srv.AddTarget(tg); err != nil {
				t.Fatal(err)
			}
			l := newLogin(srv, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, srv.rand())
			if err := tt.ci(ok).run(l); !errors.Is(err, tt.want) {
				t.Errorf("login = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLoginStatus(t *testing.T) {
	tests := []struct {
		err           error
		class, detail byte
	}{
		{ErrAuthFailed, 2, 1}, {ErrNotAuthorized, 2, 2}, {ErrTargetNotFound, 2, 3},
		{ErrMissingParameter, 2, 7}, {ErrLoginProtocol, 2, 0},
	}
	for _, tt := range tests {
		if c, d := loginStatus(tt.err); c != tt.class || d != tt.detail {
			t.Errorf("loginStatus(%v) = %#x/%#x, want %#x/%#x", tt.err, c, d, tt.class, tt.detail)
		}
	}
}
