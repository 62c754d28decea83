package iscsi

import (
	"encoding/hex"
	"testing"
)

// Golden messages laid out by hand from include/uapi/scsi/iscsi_if.h:
// nlmsghdr (len, type, flags=REQUEST, seq, pid), then iscsi_uevent
// (type, iferror, transport_handle, u[24], r[16]) and any data.
func TestEncodeRequestGolden(t *testing.T) {
	u, data := setParamRequest(1, 2, paramTargetName, "iqn.x")
	var sendPDU struct{ u, payload []byte }
	sendPDU.u, sendPDU.payload = sendPDURequest(3, 0, []byte{1, 2, 3, 4}, []byte{5, 6})
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{
			"create_session",
			encodeRequest(uevCreateSession, 7, 0xabcd, words(5, cmdsMax|queueDepth<<16), nil),
			"48000000" + "0b00" + "0100" + "07000000" + "00000000" +
				"0b000000" + "00000000" + "cdab000000000000" +
				"05000000" + "8000" + "2000" + "0000000000000000" + "0000000000000000" +
				"00000000000000000000000000000000",
		},
		{
			"bind_conn",
			encodeRequest(uevBindConn, 1, 1, bindRequest(3, 0, 9), nil),
			"48000000" + "0f00" + "0100" + "01000000" + "00000000" +
				"0f000000" + "00000000" + "0100000000000000" +
				"03000000" + "00000000" + "0900000000000000" + "01000000" + "00000000" +
				"00000000000000000000000000000000",
		},
		{
			"set_param_target_name",
			encodeRequest(uevSetParam, 2, 1, u, data),
			"4e000000" + "1000" + "0100" + "02000000" + "00000000" +
				"10000000" + "00000000" + "0100000000000000" +
				"01000000" + "02000000" + "0f000000" + "06000000" + "0000000000000000" +
				"00000000000000000000000000000000" +
				hex.EncodeToString([]byte("iqn.x\x00")) + "0000",
		},
		{
			"stop_conn_recover",
			encodeRequest(uevStopConn, 3, 1, stopRequest(3, 0, stopConnRecover), nil),
			"48000000" + "1200" + "0100" + "03000000" + "00000000" +
				"12000000" + "00000000" + "0100000000000000" +
				"03000000" + "00000000" + "0000000000000000" + "03000000" + "00000000" +
				"00000000000000000000000000000000",
		},
		{
			"send_pdu",
			encodeRequest(uevSendPDU, 4, 1, sendPDU.u, sendPDU.payload),
			"4e000000" + "1300" + "0100" + "04000000" + "00000000" +
				"13000000" + "00000000" + "0100000000000000" +
				"03000000" + "00000000" + "04000000" + "02000000" + "0000000000000000" +
				"00000000000000000000000000000000" +
				"01020304" + "0506" + "0000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(tt.got); got != tt.want {
				t.Errorf("encodeRequest() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	b, _ := hex.DecodeString("66000000" + "00000000" + "0100000000000000" +
		"000000000000000000000000000000000000000000000000" +
		"03000000" + "00000000" + "fc030000" + "00000000")
	e, err := decodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	ce := e.connError()
	if e.typ != kevConnError || e.handle != 1 || ce.sid != 3 || ce.cid != 0 || ce.code != 1020 {
		t.Errorf("decodeEvent() = %+v, conn error %+v", e, ce)
	}
	if _, err := decodeEvent(b[:55]); err == nil {
		t.Error("decodeEvent(55 bytes) = nil error")
	}
}

// TestDecodeRecvPDUGolden: ISCSI_KEVENT_RECV_PDU laid out by hand from
// iscsi_if.h (r.recv_req is sid, cid, recv_handle), then a Login
// Response header with 4 data bytes, then the data.
func TestDecodeRecvPDUGolden(t *testing.T) {
	b := recvPDUGolden()
	e, err := decodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	sid, cid, p, err := e.recvPDU()
	if err != nil || e.typ != kevRecvPDU || sid != 5 || cid != 2 || p.ITT() != 7 || string(p.Data) != "a=b\x00" {
		t.Errorf("recvPDU() = sid %d cid %d %+v, %v", sid, cid, p, err)
	}
}

func recvPDUGolden() []byte {
	b, _ := hex.DecodeString("65000000" + "00000000" + "0100000000000000" +
		"000000000000000000000000000000000000000000000000" +
		"05000000" + "02000000" + "0000000000000000" +
		"23870000" + "00000004" + "000000000000" + "0000" + "00000007" +
		"00000000000000000000000000000000000000000000000000000000" + // 28 bytes to 48
		"613d6200")
	return b
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(encodeRequest(uevBindConn, 1, 1, bindRequest(3, 0, 9), nil)[nlmsgHdrSize:])
	f.Add(recvPDUGolden())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvent(b)
		if err == nil {
			e.connError()
			e.retcode()
			if _, _, p, err := e.recvPDU(); err == nil && len(p.Data) != p.DataSegmentLength() {
				t.Errorf("recvPDU() data of %d bytes, header says %d", len(p.Data), p.DataSegmentLength())
			}
		}
	})
}
