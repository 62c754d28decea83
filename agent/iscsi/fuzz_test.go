package iscsi

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// FuzzLogin plays a target that answers every Login Request with the
// same fuzzed bytes: Login must fail or succeed, never panic or hang.
func FuzzLogin(f *testing.F) {
	resp := pdu.New(pdu.OpLoginResp, 0)
	resp.SetLoginStages(false, pdu.StageSecurity, 0)
	resp.Data = pdu.EncodeText([]pdu.KV{{Key: "AuthMethod", Value: "CHAP"}, {Key: "CHAP_A", Value: "5"},
		{Key: "CHAP_I", Value: "1"}, {Key: "CHAP_C", Value: "0x0102"}, {Key: "TargetPortalGroupTag", Value: "1"}})
	b, _ := resp.Encode(nil, pdu.Limits{})
	f.Add(b)
	resp.SetLoginStages(true, pdu.StageOperational, pdu.StageFullFeature)
	resp.SetTSIH(1)
	resp.Data = pdu.EncodeText(offer(Config{}.withDefaults()))
	b, _ = resp.Encode(nil, pdu.Limits{})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		// An incomplete PDU would only wait for the deadline: send it once
		// and hang up.
		p, perr := pdu.Read(bytes.NewReader(b), pdu.Limits{})
		if perr == nil {
			b, _ = p.Encode(nil, pdu.Limits{}) // no trailing bytes to block the pipe
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			defer s.Close()
			for {
				if _, err := pdu.Read(s, pdu.Limits{}); err != nil {
					return
				}
				if _, err := s.Write(b); err != nil || perr != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		Login(ctx, c, Config{InitiatorName: "iqn.i", TargetName: "iqn.t", CHAP: &testCHAP})
	})
}
