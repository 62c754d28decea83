package iscsi

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// handover is what the keeper needs of the attach, sent to it through a
// pipe (never a file): it holds the CHAP secrets.
type handover struct {
	Portal          string        `json:"portal"`
	TargetName      string        `json:"target"`
	InitiatorName   string        `json:"initiator"`
	ISID            [6]byte       `json:"isid"`
	CHAP            *pdu.CHAP     `json:"chap,omitempty"`
	HeaderDigest    bool          `json:"header_digest,omitempty"`
	MaxRecv         int           `json:"max_recv"`
	MaxBurst        int           `json:"max_burst"`
	FirstBurst      int           `json:"first_burst"`
	RecoveryTimeout time.Duration `json:"recovery_timeout"`
	PingInterval    time.Duration `json:"ping_interval"`
	SID             uint32        `json:"sid"`
	CID             uint32        `json:"cid"`
}

// maxHandover bounds what the keeper reads from its pipe.
const maxHandover = 64 << 10

func newHandover(t Target, d *Disk) handover {
	l := t.Login
	return handover{
		Portal: t.Portal, TargetName: l.TargetName, InitiatorName: l.InitiatorName,
		ISID: l.ISID, CHAP: l.CHAP, HeaderDigest: l.HeaderDigest,
		MaxRecv: l.MaxRecvDataSegmentLength, MaxBurst: l.MaxBurstLength, FirstBurst: l.FirstBurstLength,
		RecoveryTimeout: t.RecoveryTimeout, PingInterval: t.PingInterval,
		SID: d.SID, CID: d.CID,
	}
}

// newKeeper turns a handover back into a keeper (without its kernel).
func (h handover) newKeeper() *keeper {
	return &keeper{
		Target: Target{
			Portal: h.Portal,
			Login: Config{
				InitiatorName: h.InitiatorName, TargetName: h.TargetName, ISID: h.ISID, CHAP: h.CHAP,
				HeaderDigest: h.HeaderDigest, MaxRecvDataSegmentLength: h.MaxRecv,
				MaxBurstLength: h.MaxBurst, FirstBurstLength: h.FirstBurst,
			},
			RecoveryTimeout: h.RecoveryTimeout, PingInterval: h.PingInterval,
		},
		SID: h.SID, CID: h.CID,
	}
}

func readHandover(r io.Reader) (handover, error) {
	var h handover
	b, err := io.ReadAll(io.LimitReader(r, maxHandover+1))
	if err != nil {
		return h, fmt.Errorf("iscsi: keeper handover: %w", err)
	}
	if len(b) > maxHandover {
		return h, fmt.Errorf("iscsi: keeper handover larger than %d bytes", maxHandover)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("iscsi: keeper handover: %w", err)
	}
	if h.Portal == "" || h.TargetName == "" || h.InitiatorName == "" {
		return h, fmt.Errorf("iscsi: keeper handover without portal or names")
	}
	return h, nil
}

func jsonEncode(w io.Writer, h handover) error { return json.NewEncoder(w).Encode(h) }
