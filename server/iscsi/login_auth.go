package iscsi

import (
	"fmt"
	"io"
	"strconv"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// security handles AuthMethod and the CHAP exchange.
func (l *login) security(kvs []pdu.KV) ([]pdu.KV, error) {
	var out []pdu.KV
	if m, ok := pdu.Lookup(kvs, "AuthMethod"); ok && l.chap == chapNone {
		kv, err := l.chooseAuth(m)
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	if a, ok := pdu.Lookup(kvs, "CHAP_A"); ok {
		kv, err := l.challengeInitiator(a)
		if err != nil {
			return nil, err
		}
		return append(out, kv...), nil
	}
	if _, ok := pdu.Lookup(kvs, "CHAP_R"); ok || l.chap == chapWantReply {
		kv, err := l.verify(kvs)
		if err != nil {
			return nil, err
		}
		out = append(out, kv...)
	}
	return out, nil
}

func (l *login) chooseAuth(offer string) (pdu.KV, error) {
	switch {
	case l.auth == nil && offers(offer, "None"):
		l.authenticated = true
		return pdu.KV{Key: "AuthMethod", Value: "None"}, nil
	case l.auth != nil && offers(offer, "CHAP"):
		l.chap = chapWantAlg
		return pdu.KV{Key: "AuthMethod", Value: "CHAP"}, nil
	}
	return pdu.KV{}, fmt.Errorf("%w: AuthMethod=%q not acceptable", ErrAuthFailed, offer)
}

func (l *login) challengeInitiator(algs string) ([]pdu.KV, error) {
	if l.chap != chapWantAlg {
		return nil, fmt.Errorf("%w: CHAP_A out of sequence", ErrAuthFailed)
	}
	if !offers(algs, "5") {
		return nil, fmt.Errorf("%w: CHAP_A=%q, only 5 (MD5) supported", ErrAuthFailed, algs)
	}
	buf := make([]byte, 1+MinChallengeLength)
	if _, err := io.ReadFull(l.rand, buf); err != nil {
		return nil, fmt.Errorf("iscsi: CHAP challenge: %w", err)
	}
	l.chapID, l.challenge = buf[0], buf[1:]
	l.chap = chapWantReply
	return []pdu.KV{
		{Key: "CHAP_A", Value: "5"},
		{Key: "CHAP_I", Value: strconv.Itoa(int(l.chapID))},
		{Key: "CHAP_C", Value: pdu.EncodeBinary(l.challenge)},
	}, nil
}

// verify checks the initiator's CHAP_N and CHAP_R and, for mutual
// CHAP, answers the initiator's CHAP_I and CHAP_C.
func (l *login) verify(kvs []pdu.KV) ([]pdu.KV, error) {
	if l.chap != chapWantReply {
		return nil, fmt.Errorf("%w: CHAP_R out of sequence", ErrAuthFailed)
	}
	l.chap = chapDone // one attempt per connection
	name, _ := pdu.Lookup(kvs, "CHAP_N")
	r, ok := pdu.Lookup(kvs, "CHAP_R")
	if !ok {
		return nil, fmt.Errorf("%w: CHAP_R missing", ErrAuthFailed)
	}
	got, err := decodeCHAPValue(r)
	if err != nil {
		return nil, err
	}
	want := pdu.CHAPResponse(l.chapID, l.auth.Secret, l.challenge)
	userOK := equalConstantTime([]byte(name), []byte(l.auth.User))
	if !equalConstantTime(got, want) || !userOK {
		return nil, fmt.Errorf("%w: wrong CHAP response for user %q", ErrAuthFailed, name)
	}
	out, err := l.answerInitiator(kvs)
	if err != nil {
		return nil, err
	}
	l.authenticated = true
	return out, nil
}

func (l *login) answerInitiator(kvs []pdu.KV) ([]pdu.KV, error) {
	idS, hasI := pdu.Lookup(kvs, "CHAP_I")
	cS, hasC := pdu.Lookup(kvs, "CHAP_C")
	switch {
	case !hasI && !hasC && !l.auth.Mutual():
		return nil, nil
	case !hasI || !hasC:
		return nil, fmt.Errorf("%w: mutual CHAP needs CHAP_I and CHAP_C", ErrAuthFailed)
	case !l.auth.Mutual():
		return nil, fmt.Errorf("%w: initiator asks for mutual CHAP, target has no secret", ErrAuthFailed)
	}
	id, err := strconv.Atoi(idS)
	if err != nil || id < 0 || id > 255 {
		return nil, fmt.Errorf("%w: CHAP_I=%q", ErrAuthFailed, idS)
	}
	c, err := decodeCHAPValue(cS)
	if err != nil {
		return nil, err
	}
	if len(c) < MinChallengeLength || len(c) > maxChallengeLength {
		return nil, fmt.Errorf("%w: initiator challenge of %d bytes", ErrAuthFailed, len(c))
	}
	if equalConstantTime(c, l.challenge) {
		return nil, fmt.Errorf("%w: reflected CHAP challenge", ErrAuthFailed)
	}
	if l.auth.TargetSecret == l.auth.Secret {
		return nil, fmt.Errorf("%w: target and initiator secrets are equal", ErrAuthFailed)
	}
	return []pdu.KV{
		{Key: "CHAP_N", Value: l.auth.TargetUser},
		{Key: "CHAP_R", Value: pdu.EncodeBinary(pdu.CHAPResponse(byte(id), l.auth.TargetSecret, c))},
	}, nil
}
