package pdu

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func samplePDUs() []*PDU {
	cmd := New(OpSCSICommand, FlagFinal|FlagWrite)
	cmd.SetITT(7)
	cmd.SetU32(OffEDTL, 4096)
	cmd.SetU32(OffCmdSN, 3)
	copy(cmd.CDB(), []byte{0x2a, 0, 0, 0, 0, 1, 0, 0, 8, 0})
	cmd.Data = bytes.Repeat([]byte{0xab}, 513)
	login := New(OpLoginReq, 0)
	login.SetImmediate(true)
	login.SetLoginStages(true, StageSecurity, StageOperational)
	login.Data = EncodeText([]KV{{"InitiatorName", "iqn.x"}, {"AuthMethod", "CHAP,None"}})
	ahs := New(OpSCSICommand, FlagFinal)
	ahs.AHS = []byte{0, 4, 1, 0, 1, 2, 3, 4}
	var out []*PDU
	for _, op := range []Opcode{OpNOPOut, OpNOPIn, OpSCSIResponse, OpTaskMgmtReq, OpTaskMgmtResp,
		OpLoginResp, OpTextReq, OpTextResp, OpDataOut, OpDataIn, OpLogoutReq, OpLogoutResp, OpR2T, OpReject} {
		p := New(op, FlagFinal)
		p.SetITT(uint32(op))
		p.SetU32(OffStatSN, 9)
		out = append(out, p)
	}
	return append(out, cmd, login, ahs)
}

func TestRoundTrip(t *testing.T) {
	for _, l := range []Limits{{}, {HeaderDigest: true, DataDigest: true}, {DataDigest: true}} {
		for _, p := range samplePDUs() {
			var buf bytes.Buffer
			if err := Write(&buf, p, l); err != nil {
				t.Fatalf("Write(%s) = %v", p.Opcode(), err)
			}
			if buf.Len()%4 != 0 {
				t.Errorf("%s: wire length %d not padded", p.Opcode(), buf.Len())
			}
			got, err := Read(&buf, l)
			if err != nil {
				t.Fatalf("Read(%s) = %v", p.Opcode(), err)
			}
			if got.Opcode() != p.Opcode() || got.ITT() != p.ITT() || !bytes.Equal(got.Data, p.Data) || !bytes.Equal(got.AHS, p.AHS) {
				t.Errorf("round trip %s: got %+v, want %+v", p.Opcode(), got, p)
			}
		}
	}
}

func TestReadErrors(t *testing.T) {
	big := New(OpSCSICommand, 0)
	big.Data = make([]byte, 9000)
	small := New(OpNOPOut, 0)
	small.Data = []byte("ping")
	tests := []struct {
		name   string
		p      *PDU
		l      Limits
		mangle func([]byte)
		want   error
	}{
		{"data_over_limit", big, Limits{}, nil, ErrDataTooLong},
		{"header_digest_mismatch", small, Limits{HeaderDigest: true, DataDigest: true}, func(b []byte) { b[20] ^= 1 }, ErrHeaderDigest},
		{"data_digest_mismatch", small, Limits{HeaderDigest: true, DataDigest: true}, func(b []byte) { b[BHSLength+4] ^= 1 }, ErrDataDigest},
		{"truncated_data", small, Limits{}, func(b []byte) {}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.p.Encode(nil, Limits{HeaderDigest: tt.l.HeaderDigest, DataDigest: tt.l.DataDigest})
			if err != nil {
				t.Fatal(err)
			}
			if tt.mangle != nil {
				tt.mangle(b)
			}
			if tt.name == "truncated_data" {
				b = b[:len(b)-2]
			}
			_, err = Read(bytes.NewReader(b), tt.l)
			if !errors.Is(err, tt.want) {
				t.Errorf("Read() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseText(t *testing.T) {
	long := bytes.Repeat([]byte{'k'}, MaxKeyLength+1)
	tests := []struct {
		name string
		in   string
		want error
		n    int
	}{
		{"two_keys", "A=1\x00B=\x00", nil, 2},
		{"nul_padding", "A=1\x00\x00\x00", nil, 1},
		{"no_equals", "A\x00", ErrMalformedText, 0},
		{"empty_key", "=1\x00", ErrMalformedText, 0},
		{"bad_key_char", "A B=1\x00", ErrMalformedText, 0},
		{"duplicate", "A=1\x00A=2\x00", ErrDuplicateKey, 0},
		{"key_too_long", string(long) + "=1\x00", ErrTextLimit, 0},
		{"value_too_long", "A=" + string(bytes.Repeat([]byte{'v'}, MaxValueLength+1)), ErrTextLimit, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvs, err := ParseText([]byte(tt.in))
			if !errors.Is(err, tt.want) || len(kvs) != tt.n {
				t.Errorf("ParseText(%q) = %v, %v; want %d keys, %v", tt.in, kvs, err, tt.n, tt.want)
			}
		})
	}
}

func TestParseTextTooManyKeys(t *testing.T) {
	var kvs []KV
	for i := 0; i <= MaxKeys; i++ {
		kvs = append(kvs, KV{Key: "K" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: "v"})
	}
	if _, err := ParseText(EncodeText(kvs)); !errors.Is(err, ErrTextLimit) {
		t.Errorf("ParseText(%d keys) = %v, want %v", len(kvs), err, ErrTextLimit)
	}
}

func FuzzRead(f *testing.F) {
	for _, p := range samplePDUs() {
		for _, l := range []Limits{{}, {HeaderDigest: true, DataDigest: true}} {
			b, _ := p.Encode(nil, l)
			f.Add(b, l.HeaderDigest)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, digests bool) {
		l := Limits{MaxDataSegmentLength: 65536, HeaderDigest: digests, DataDigest: digests}
		p, err := Read(bytes.NewReader(b), l)
		if err != nil {
			return
		}
		if len(p.Data) > 65536 || len(p.AHS) > maxAHS {
			t.Fatalf("Read allocated past limits: data %d, AHS %d", len(p.Data), len(p.AHS))
		}
		out, err := p.Encode(nil, l)
		if err != nil {
			t.Fatalf("Encode(Read(b)) = %v", err)
		}
		q, err := Read(bytes.NewReader(out), l)
		if err != nil {
			t.Fatalf("Read(Encode(p)) = %v", err)
		}
		if q.Header != p.Header || !bytes.Equal(q.Data, p.Data) || !bytes.Equal(q.AHS, p.AHS) {
			t.Fatalf("round trip differs")
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add(EncodeText([]KV{{"InitiatorName", "iqn.2026-01.x:y"}, {"CHAP_C", "0x0102"}}))
	f.Add([]byte("A=1\x00\x00B\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseText(b)
		if err != nil {
			return
		}
		again, err := ParseText(EncodeText(kvs))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("ParseText(EncodeText(kvs)) = %v, %v; want %v", again, err, kvs)
		}
		for i := range kvs {
			if kvs[i] != again[i] {
				t.Fatalf("pair %d: %v != %v", i, again[i], kvs[i])
			}
		}
	})
}
