package iscsi

import (
	"strconv"
	"strings"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// Target-side values of the operational keys (RFC 7143 section 13).
const (
	targetMaxRecvDataSegment = 256 << 10
	targetMaxBurst           = 1 << 20
	targetFirstBurst         = 256 << 10
	// cmdWindow is how many commands an initiator may have queued
	// (MaxCmdSN - ExpCmdSN + 1).
	cmdWindow = 128
)

// params are the negotiated session and connection parameters.
type params struct {
	headerDigest, dataDigest bool
	// initiatorMaxRecv bounds the Data-In segments the target sends.
	initiatorMaxRecv int
	maxBurst         int
	firstBurst       int
	immediateData    bool
	initialR2T       bool
	sentMaxRecv      bool // MaxRecvDataSegmentLength declared to the initiator
}

// defaultParams are RFC 7143 defaults, used for keys not negotiated.
func defaultParams() params {
	return params{
		initiatorMaxRecv: 8192, maxBurst: 262144, firstBurst: 65536,
		immediateData: true, initialR2T: true,
	}
}

// negotiate answers one operational key; ok is false for keys that are
// not operational (the caller handles or refuses them).
func (p *params) negotiate(kv pdu.KV) (answer string, ok bool) {
	switch kv.Key {
	case "HeaderDigest":
		return chooseDigest(kv.Value, &p.headerDigest), true
	case "DataDigest":
		return chooseDigest(kv.Value, &p.dataDigest), true
	case "MaxRecvDataSegmentLength":
		n, ok := number(kv.Value, 512, pdu.HardMaxDataSegment)
		if !ok {
			return "Reject", true
		}
		p.initiatorMaxRecv = n
		return "", true // declarative: the target declares its own instead
	case "MaxBurstLength":
		return p.minNumber(kv.Value, 512, targetMaxBurst, &p.maxBurst), true
	case "FirstBurstLength":
		return p.minNumber(kv.Value, 512, targetFirstBurst, &p.firstBurst), true
	case "ImmediateData":
		return boolean(kv.Value, true, true, &p.immediateData), true // AND with our Yes
	case "InitialR2T":
		return boolean(kv.Value, false, false, &p.initialR2T), true // OR with our No
	case "DataPDUInOrder", "DataSequenceInOrder":
		return boolean(kv.Value, true, false, new(bool)), true // OR with our Yes
	case "IFMarker", "OFMarker":
		return boolean(kv.Value, false, true, new(bool)), true // AND with our No
	case "MaxConnections", "MaxOutstandingR2T":
		return p.minNumber(kv.Value, 1, 1, new(int)), true
	case "ErrorRecoveryLevel":
		return p.minNumber(kv.Value, 0, 0, new(int)), true
	case "DefaultTime2Wait":
		n, ok := number(kv.Value, 0, 3600)
		if !ok {
			return "Reject", true
		}
		return strconv.Itoa(n), true // max(initiator, our 0)
	case "DefaultTime2Retain":
		return p.minNumber(kv.Value, 0, 0, new(int)), true
	}
	return "", false
}

func chooseDigest(offer string, dst *bool) string {
	for _, v := range strings.Split(offer, ",") {
		switch v {
		case "CRC32C":
			*dst = true
			return v
		case "None":
			*dst = false
			return v
		}
	}
	return "Reject"
}

func number(s string, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// minNumber negotiates a numeric key whose result is the minimum.
func (p *params) minNumber(s string, lo, ours int, dst *int) string {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo {
		return "Reject"
	}
	*dst = min(n, ours)
	if dst == &p.firstBurst || dst == &p.maxBurst {
		p.firstBurst = min(p.firstBurst, p.maxBurst)
	}
	return strconv.Itoa(*dst)
}

// boolean negotiates a Yes/No key: the result is (offer AND ours) when
// and is set, else (offer OR ours).
func boolean(s string, ours, and bool, dst *bool) string {
	var v bool
	switch s {
	case "Yes":
		v = true
	case "No":
	default:
		return "Reject"
	}
	if and {
		v = v && ours
	} else {
		v = v || ours
	}
	*dst = v
	if v {
		return "Yes"
	}
	return "No"
}
