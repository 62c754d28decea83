package iscsi

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// NETLINK_ISCSI messages (Linux include/uapi/scsi/iscsi_if.h). Every
// message carries one struct iscsi_uevent: type, iferror, transport
// handle, a 24-byte request union and a 16-byte reply union (56 bytes,
// 8-byte aligned); SET_PARAM appends the NUL-terminated value.
const (
	netlinkISCSI = 8 // NETLINK_ISCSI
	groupISCSID  = 1 // ISCSI_NL_GRP_ISCSID: kernel events for the daemon

	uevCreateSession  = 11
	uevDestroySession = 12
	uevCreateConn     = 13
	uevDestroyConn    = 14
	uevBindConn       = 15
	uevSetParam       = 16
	uevStartConn      = 17
	uevStopConn       = 18
	uevSendPDU        = 19

	kevRecvPDU   = 101
	kevConnError = 102
	kevIfError   = 103

	ueventSize   = 56
	nlmsgHdrSize = 16
	nlmFRequest  = 1

	stopConnRecover = 3 // STOP_CONN_RECOVER: keep the session, fail over I/O
)

// Kernel parameter numbers (enum iscsi_param).
type param uint32

const (
	paramMaxRecvDLength param = iota
	paramMaxXmitDLength
	paramHdrDgstEn
	paramDataDgstEn
	paramInitialR2TEn
	paramMaxR2T
	paramImmDataEn
	paramFirstBurst
	paramMaxBurst
	paramPDUInOrderEn
	paramDataSeqInOrderEn
	paramERL
	paramIFMarkerEn
	paramOFMarkerEn
	paramExpStatSN
	paramTargetName
	paramTPGT
	paramPersistentAddress
	paramPersistentPort
	paramSessRecoveryTmo
	paramConnPort
	paramConnAddress
	_ // USERNAME
	_ // USERNAME_IN
	_ // PASSWORD
	_ // PASSWORD_IN
	_ // FAST_ABORT
	_ // ABORT_TMO
	_ // LU_RESET_TMO
	_ // HOST_RESET_TMO
	paramPingTmo
	paramRecvTmo
	_ // IFACE_NAME
	_ // ISID
	paramInitiatorName
)

// ErrKernel wraps failures the kernel reported for a NETLINK_ISCSI request.
var ErrKernel = errors.New("iscsi: kernel refused request")

// encodeRequest builds one netlink message: header, iscsi_uevent with the
// request union u (at most 24 bytes), then data.
func encodeRequest(typ uint32, seq uint32, handle uint64, u []byte, data []byte) []byte {
	n := nlmsgHdrSize + ueventSize + len(data)
	b := make([]byte, (n+3)&^3)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(n))
	le.PutUint16(b[4:], uint16(typ))
	le.PutUint16(b[6:], nlmFRequest)
	le.PutUint32(b[8:], seq)
	ev := b[nlmsgHdrSize:]
	le.PutUint32(ev[0:], typ)
	le.PutUint64(ev[8:], handle)
	copy(ev[16:40], u)
	copy(ev[ueventSize:], data)
	return b
}

// words packs little-endian 32-bit words into a request union.
func words(v ...uint32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, w := range v {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

// bindRequest is struct msg_bind_conn: sid, cid, transport_eph (u64),
// is_leading.
func bindRequest(sid, cid uint32, fd int) []byte {
	b := words(sid, cid)
	b = binary.LittleEndian.AppendUint64(b, uint64(fd))
	return binary.LittleEndian.AppendUint32(b, 1)
}

// stopRequest is struct msg_stop_conn: sid, cid, conn_handle (u64), flag.
func stopRequest(sid, cid uint32, flag uint32) []byte {
	b := words(sid, cid)
	b = binary.LittleEndian.AppendUint64(b, 0)
	return binary.LittleEndian.AppendUint32(b, flag)
}

// setParamRequest is struct msg_set_param (sid, cid, param, len) and the
// NUL-terminated value.
func setParamRequest(sid, cid uint32, p param, value string) (u, data []byte) {
	data = append([]byte(value), 0)
	return words(sid, cid, uint32(p), uint32(len(data))), data
}

// sendPDURequest is struct msg_send_pdu (sid, cid, hdr_size, data_size);
// the header and the data follow the uevent.
func sendPDURequest(sid, cid uint32, hdr, data []byte) (u, payload []byte) {
	payload = append(append(make([]byte, 0, len(hdr)+len(data)), hdr...), data...)
	return words(sid, cid, uint32(len(hdr)), uint32(len(data))), payload
}

// event is a decoded iscsi_uevent.
type event struct {
	typ     uint32
	iferror int32
	handle  uint64
	r       [16]byte // reply union
	data    []byte   // what follows the uevent (RECV_PDU: header and data)
}

func (e event) word(i int) uint32 { return binary.LittleEndian.Uint32(e.r[4*i:]) }

// retcode is r.retcode of replies that only carry a status.
func (e event) retcode() int32 { return int32(e.word(0)) }

func decodeEvent(b []byte) (event, error) {
	if len(b) < ueventSize {
		return event{}, fmt.Errorf("iscsi: netlink event of %d bytes, want %d", len(b), ueventSize)
	}
	le := binary.LittleEndian
	e := event{typ: le.Uint32(b[0:]), iferror: int32(le.Uint32(b[4:])), handle: le.Uint64(b[8:])}
	copy(e.r[:], b[40:56])
	if len(b) > ueventSize {
		e.data = append([]byte(nil), b[ueventSize:]...)
	}
	return e, nil
}

// recvPDU is the payload of ISCSI_KEVENT_RECV_PDU: struct msg_recv_req
// (sid, cid, recv_handle u64), then the PDU's header and data segment.
func (e event) recvPDU() (sid, cid uint32, p *pdu.PDU, err error) {
	sid, cid = e.word(0), e.word(1)
	if len(e.data) < pdu.BHSLength {
		return sid, cid, nil, fmt.Errorf("iscsi: received PDU of %d bytes", len(e.data))
	}
	p = new(pdu.PDU)
	copy(p.Header[:], e.data)
	p.Data = e.data[pdu.BHSLength:]
	n := p.DataSegmentLength()
	if n > len(p.Data) || p.TotalAHSLength() != 0 {
		return sid, cid, nil, fmt.Errorf("iscsi: received PDU with %d of %d data bytes", len(p.Data), n)
	}
	p.Data = p.Data[:n]
	return sid, cid, p, nil
}

// connError is the payload of ISCSI_KEVENT_CONN_ERROR.
type connError struct {
	sid, cid, code uint32
}

func (e event) connError() connError {
	return connError{sid: e.word(0), cid: e.word(1), code: e.word(2)}
}
