package iscsi

import (
	"fmt"
	"io"
	"strconv"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// security runs the security negotiation stage: identification, then
// CHAP (RFC 7143 section 12.1.3) when configured.
func (l *login) security() error {
	l.stage = pdu.StageSecurity
	hello := []pdu.KV{
		{Key: "InitiatorName", Value: l.cfg.InitiatorName},
		{Key: "TargetName", Value: l.cfg.TargetName},
		{Key: "SessionType", Value: "Normal"},
	}
	if l.cfg.CHAP == nil {
		hello = append(hello, pdu.KV{Key: "AuthMethod", Value: "None"})
		return l.transitToOperational(hello)
	}
	got, _, err := l.exchange(append(hello, pdu.KV{Key: "AuthMethod", Value: "CHAP"}), false, 0)
	if err != nil {
		return err
	}
	if m, _ := pdu.Lookup(got, "AuthMethod"); m != "CHAP" {
		// A target that skips authentication cannot have proven itself.
		return fmt.Errorf("%w: target chose AuthMethod=%q, CHAP required", ErrTargetAuth, m)
	}
	got, _, err = l.exchange([]pdu.KV{{Key: "CHAP_A", Value: "5"}}, false, 0)
	if err != nil {
		return err
	}
	answer, err := l.answerChallenge(got)
	if err != nil {
		return err
	}
	var ourID byte
	var ourChallenge []byte
	if l.cfg.CHAP.Mutual() {
		buf := make([]byte, 1+challengeLength)
		if _, err := io.ReadFull(l.cfg.Rand, buf); err != nil {
			return fmt.Errorf("iscsi: CHAP challenge: %w", err)
		}
		ourID, ourChallenge = buf[0], buf[1:]
		answer = append(answer,
			pdu.KV{Key: "CHAP_I", Value: strconv.Itoa(int(ourID))},
			pdu.KV{Key: "CHAP_C", Value: pdu.EncodeBinary(ourChallenge)})
	}
	got, moved, err := l.exchange(answer, true, pdu.StageOperational)
	if err != nil {
		return err
	}
	if l.cfg.CHAP.Mutual() {
		if err := l.verifyTarget(got, ourID, ourChallenge); err != nil {
			return err
		}
	}
	if !moved {
		return fmt.Errorf("%w: target stayed in the security stage after CHAP", ErrLoginProtocol)
	}
	return nil
}

func (l *login) transitToOperational(kvs []pdu.KV) error {
	for range maxLoginRounds {
		_, moved, err := l.exchange(kvs, true, pdu.StageOperational)
		if err != nil || moved {
			return err
		}
		kvs = nil
	}
	return fmt.Errorf("%w: target did not leave the security stage", ErrLoginProtocol)
}

// answerChallenge computes CHAP_N and CHAP_R for the target's CHAP_I and
// CHAP_C.
func (l *login) answerChallenge(got []pdu.KV) ([]pdu.KV, error) {
	if a, _ := pdu.Lookup(got, "CHAP_A"); a != "5" {
		return nil, fmt.Errorf("%w: target chose CHAP_A=%q, want 5 (MD5)", ErrLoginProtocol, a)
	}
	idS, okI := pdu.Lookup(got, "CHAP_I")
	cS, okC := pdu.Lookup(got, "CHAP_C")
	if !okI || !okC {
		return nil, fmt.Errorf("%w: target sent no CHAP_I/CHAP_C", ErrLoginProtocol)
	}
	id, err := strconv.Atoi(idS)
	if err != nil || id < 0 || id > 255 {
		return nil, fmt.Errorf("%w: CHAP_I=%q", ErrLoginProtocol, idS)
	}
	challenge, err := decodeBinary(cS)
	if err != nil {
		return nil, err
	}
	if len(challenge) == 0 || len(challenge) > maxChallengeLength {
		return nil, fmt.Errorf("%w: target challenge of %d bytes", ErrLoginProtocol, len(challenge))
	}
	return []pdu.KV{
		{Key: "CHAP_N", Value: l.cfg.CHAP.User},
		{Key: "CHAP_R", Value: pdu.EncodeBinary(pdu.CHAPResponse(byte(id), l.cfg.CHAP.Secret, challenge))},
	}, nil
}

// verifyTarget checks the target's answer to our challenge.
func (l *login) verifyTarget(got []pdu.KV, id byte, challenge []byte) error {
	name, okN := pdu.Lookup(got, "CHAP_N")
	r, okR := pdu.Lookup(got, "CHAP_R")
	if !okN || !okR {
		return fmt.Errorf("%w: no CHAP_N/CHAP_R in the answer", ErrTargetAuth)
	}
	resp, err := decodeBinary(r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTargetAuth, err)
	}
	want := pdu.CHAPResponse(id, l.cfg.CHAP.TargetSecret, challenge)
	nameOK := equalConstantTime([]byte(name), []byte(l.cfg.CHAP.TargetUser))
	if !equalConstantTime(resp, want) || !nameOK {
		return fmt.Errorf("%w: wrong response from target user %q", ErrTargetAuth, name)
	}
	return nil
}
