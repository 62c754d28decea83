package iscsi

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// chapStep is where a CHAP exchange stands.
type chapStep int

const (
	chapNone      chapStep = iota // AuthMethod not yet CHAP
	chapWantAlg                   // AuthMethod=CHAP chosen, waiting for CHAP_A
	chapWantReply                 // challenge sent, waiting for CHAP_N and CHAP_R
	chapDone
)

// login runs the login phase of one connection (RFC 7143 section 6).
// It is a pure state machine: feed it Login Requests with step.
type login struct {
	srv    *Server
	remote net.Addr
	rand   io.Reader

	first         bool
	stage         int
	statSN        uint32
	initiatorName string
	discovery     bool
	target        *Target   // nil for discovery
	auth          *pdu.CHAP // nil when no authentication is required
	authenticated bool
	chap          chapStep
	chapID        byte
	challenge     []byte
	params        params
	tsih          uint16
}

func newLogin(srv *Server, remote net.Addr, rand io.Reader) *login {
	return &login{srv: srv, remote: remote, rand: rand, first: true, params: defaultParams()}
}

// step handles one Login Request. It returns the response to send and
// whether the connection enters full feature phase. On error the
// caller sends the response (carrying the failure status) and closes.
func (l *login) step(req *pdu.PDU) (resp *pdu.PDU, done bool, err error) {
	resp = l.response(req)
	done, err = l.process(req, resp)
	if err != nil {
		class, detail := loginStatus(err)
		resp.SetLoginStatus(class, detail)
		resp.SetLoginStages(false, l.stage, 0)
		resp.Data = nil
		return resp, false, err
	}
	return resp, done, nil
}

func (l *login) response(req *pdu.PDU) *pdu.PDU {
	resp := pdu.New(pdu.OpLoginResp, 0)
	copy(resp.Header[8:16], req.Header[8:16]) // ISID, TSIH
	resp.SetITT(req.ITT())
	if l.first {
		l.statSN = req.ExpStatSN()
	}
	resp.SetSN(l.statSN, req.CmdSN(), req.CmdSN()+cmdWindow-1)
	l.statSN++
	return resp
}

func (l *login) process(req *pdu.PDU, resp *pdu.PDU) (bool, error) {
	if req.Opcode() != pdu.OpLoginReq {
		return false, fmt.Errorf("%w: %s during login", ErrLoginProtocol, req.Opcode())
	}
	if req.Header[3] > 0 { // VersionMin
		return false, fmt.Errorf("%w: version-min %d", ErrUnsupportedVersion, req.Header[3])
	}
	if req.Continue() {
		return false, fmt.Errorf("%w: multi-PDU login text not supported", ErrLoginProtocol)
	}
	if req.TSIH() != 0 {
		return false, fmt.Errorf("%w: TSIH %d", ErrSessionNotFound, req.TSIH())
	}
	csg := req.LoginCSG()
	if csg != l.stage && !(l.first && csg == pdu.StageOperational) || csg == 2 || csg == pdu.StageFullFeature {
		return false, fmt.Errorf("%w: stage %d, expected %d", ErrLoginProtocol, csg, l.stage)
	}
	l.stage = csg
	kvs, err := pdu.ParseText(req.Data)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrLoginProtocol, err)
	}
	var out []pdu.KV
	if l.first {
		if out, err = l.identify(kvs); err != nil {
			return false, err
		}
		l.first = false
	}
	if l.stage == pdu.StageSecurity {
		more, err := l.security(kvs)
		if err != nil {
			return false, err
		}
		out = append(out, more...)
	} else if l.auth != nil && !l.authenticated {
		return false, fmt.Errorf("%w: operational stage before authentication", ErrAuthFailed)
	}
	out = append(out, l.operational(kvs)...)
	resp.Data = pdu.EncodeText(out)
	return l.transit(req, resp)
}

// identify handles the keys of the first Login Request: who is logging
// in to what, and whether that is allowed.
func (l *login) identify(kvs []pdu.KV) ([]pdu.KV, error) {
	name, ok := pdu.Lookup(kvs, "InitiatorName")
	if !ok || name == "" {
		return nil, fmt.Errorf("%w: InitiatorName", ErrMissingParameter)
	}
	l.initiatorName = name
	st, _ := pdu.Lookup(kvs, "SessionType")
	switch st {
	case "Discovery":
		l.discovery = true
		l.auth = l.srv.DiscoveryAuth
		return nil, nil
	case "", "Normal":
	default:
		return nil, fmt.Errorf("%w: SessionType=%q", ErrLoginProtocol, st)
	}
	tn, ok := pdu.Lookup(kvs, "TargetName")
	if !ok {
		return nil, fmt.Errorf("%w: TargetName", ErrMissingParameter)
	}
	t := l.srv.target(tn)
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrTargetNotFound, tn)
	}
	if !t.allows(l.remote, name) {
		return nil, fmt.Errorf("%w: %s from %v to %s", ErrNotAuthorized, name, l.remote, tn)
	}
	l.target, l.auth = t, t.Auth
	return []pdu.KV{{Key: "TargetPortalGroupTag", Value: "1"}}, nil
}

// transit sets the response's stage bits and reports whether login is
// complete.
func (l *login) transit(req, resp *pdu.PDU) (bool, error) {
	if !req.Transit() {
		resp.SetLoginStages(false, l.stage, 0)
		return false, nil
	}
	nsg := req.LoginNSG()
	if nsg <= l.stage || nsg == 2 {
		return false, fmt.Errorf("%w: transit from stage %d to %d", ErrLoginProtocol, l.stage, nsg)
	}
	if l.stage == pdu.StageSecurity && l.auth != nil && !l.authenticated {
		if l.chap == chapNone || l.chap == chapDone {
			return false, fmt.Errorf("%w: transit without authentication", ErrAuthFailed)
		}
		resp.SetLoginStages(false, l.stage, 0) // CHAP still in progress
		return false, nil
	}
	resp.SetLoginStages(true, l.stage, nsg)
	l.stage = nsg
	if nsg != pdu.StageFullFeature {
		return false, nil
	}
	l.tsih = l.srv.newTSIH()
	resp.SetTSIH(l.tsih)
	return true, nil
}

// operational negotiates operational keys; unknown keys get NotUnderstood.
func (l *login) operational(kvs []pdu.KV) []pdu.KV {
	var out []pdu.KV
	for _, kv := range kvs {
		if handledElsewhere(kv.Key) {
			continue
		}
		ans, ok := l.params.negotiate(kv)
		switch {
		case !ok:
			out = append(out, pdu.KV{Key: kv.Key, Value: "NotUnderstood"})
		case ans != "":
			out = append(out, pdu.KV{Key: kv.Key, Value: ans})
		}
	}
	if l.stage == pdu.StageOperational && !l.params.sentMaxRecv {
		l.params.sentMaxRecv = true
		out = append(out, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: fmt.Sprint(targetMaxRecvDataSegment)})
	}
	return out
}

func handledElsewhere(key string) bool {
	return slices.Contains([]string{"InitiatorName", "InitiatorAlias", "SessionType", "TargetName",
		"AuthMethod", "CHAP_A", "CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}, key)
}

func offers(list, v string) bool { return slices.Contains(strings.Split(list, ","), v) }
