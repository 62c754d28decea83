package iscsi

import (
	"net"
	"strconv"
	"time"
)

type kparam struct {
	p        param
	v        string
	optional bool // older or newer kernels may not know it
}

// paramSetter is the kernel's SET_PARAM.
type paramSetter interface {
	setParam(sid, cid uint32, p param, value string) error
}

// setParams tells the kernel the negotiated values of session s.
func setParams(nl paramSetter, sid, cid uint32, s *Session, t Target, raddr *net.TCPAddr) error {
	for _, kp := range kernelParams(s, t, raddr) {
		err := nl.setParam(sid, cid, kp.p, kp.v)
		if err != nil && kp.optional {
			t.Logger.Debug("optional iSCSI parameter not set", "param", int(kp.p), "error", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func kernelParams(s *Session, t Target, raddr *net.TCPAddr) []kparam {
	p := s.Params
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	itoa := strconv.Itoa
	return []kparam{
		{paramMaxRecvDLength, itoa(p.MaxRecvDataSegmentLength), false},
		{paramMaxXmitDLength, itoa(p.MaxXmitDataSegmentLength), false},
		{paramHdrDgstEn, b(p.HeaderDigest), false},
		{paramDataDgstEn, b(p.DataDigest), false},
		{paramInitialR2TEn, b(p.InitialR2T), false},
		{paramMaxR2T, itoa(p.MaxOutstandingR2T), false},
		{paramImmDataEn, b(p.ImmediateData), false},
		{paramFirstBurst, itoa(p.FirstBurstLength), false},
		{paramMaxBurst, itoa(p.MaxBurstLength), false},
		{paramPDUInOrderEn, b(p.DataPDUInOrder), false},
		{paramDataSeqInOrderEn, b(p.DataSequenceInOrder), false},
		{paramERL, itoa(p.ErrorRecoveryLevel), false},
		{paramIFMarkerEn, "0", true},
		{paramOFMarkerEn, "0", true},
		{paramExpStatSN, strconv.FormatUint(uint64(s.ExpStatSN), 10), false},
		{paramTargetName, t.Login.TargetName, false},
		{paramTPGT, itoa(p.TPGT), false},
		{paramPersistentAddress, raddr.IP.String(), false},
		{paramPersistentPort, itoa(raddr.Port), false},
		{paramSessRecoveryTmo, itoa(int(t.RecoveryTimeout / time.Second)), false},
		{paramConnAddress, raddr.IP.String(), true},
		{paramConnPort, itoa(raddr.Port), true},
		{paramInitiatorName, t.Login.InitiatorName, false},
		{paramPingTmo, itoa(int(t.PingInterval / time.Second)), true},
		{paramRecvTmo, itoa(int(t.PingInterval / time.Second)), true},
	}
}
