package iscsi

import (
	"fmt"
	"strconv"

	"github.com/sealroot/sealroot/iscsi/pdu"
)

// Params are the negotiated session and connection values (RFC 7143
// section 13) the kernel is told with SET_PARAM.
type Params struct {
	HeaderDigest, DataDigest bool
	// MaxRecvDataSegmentLength is what we declared; MaxXmitDataSegmentLength
	// is what the target declared (it bounds what we send).
	MaxRecvDataSegmentLength, MaxXmitDataSegmentLength int
	MaxBurstLength, FirstBurstLength                   int
	InitialR2T, ImmediateData                          bool
	MaxOutstandingR2T                                  int
	DataPDUInOrder, DataSequenceInOrder                bool
	ErrorRecoveryLevel                                 int
	MaxConnections                                     int
	IFMarker, OFMarker                                 bool
	DefaultTime2Wait, DefaultTime2Retain               int
	TPGT                                               int // TargetPortalGroupTag
}

// defaultParams are the RFC 7143 defaults, which hold for keys the target
// does not answer, with our declared receive length.
func defaultParams(c Config) Params {
	return Params{
		MaxRecvDataSegmentLength: c.MaxRecvDataSegmentLength, MaxXmitDataSegmentLength: 8192,
		MaxBurstLength: 262144, FirstBurstLength: 65536,
		InitialR2T: true, ImmediateData: true, MaxOutstandingR2T: 1,
		DataPDUInOrder: true, DataSequenceInOrder: true, MaxConnections: 1,
		DefaultTime2Wait: 2, DefaultTime2Retain: 20,
	}
}

// offer lists the operational keys the initiator proposes.
func offer(c Config) []pdu.KV {
	hd := "None"
	if c.HeaderDigest {
		hd = "CRC32C,None"
	}
	return []pdu.KV{
		{Key: "HeaderDigest", Value: hd},
		{Key: "DataDigest", Value: "None"},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(c.MaxRecvDataSegmentLength)},
		{Key: "MaxBurstLength", Value: strconv.Itoa(c.MaxBurstLength)},
		{Key: "FirstBurstLength", Value: strconv.Itoa(c.FirstBurstLength)},
		{Key: "InitialR2T", Value: "No"},
		{Key: "ImmediateData", Value: "Yes"},
		{Key: "MaxOutstandingR2T", Value: "1"},
		{Key: "DataPDUInOrder", Value: "Yes"},
		{Key: "DataSequenceInOrder", Value: "Yes"},
		{Key: "ErrorRecoveryLevel", Value: "0"},
		{Key: "MaxConnections", Value: "1"},
		{Key: "IFMarker", Value: "No"},
		{Key: "OFMarker", Value: "No"},
		{Key: "DefaultTime2Wait", Value: "0"},
		{Key: "DefaultTime2Retain", Value: "0"},
	}
}

// apply records the target's answers.
func (p *Params) apply(kvs []pdu.KV, c Config) error {
	for _, kv := range kvs {
		if err := p.applyOne(kv, c); err != nil {
			return err
		}
	}
	return nil
}

func (p *Params) applyOne(kv pdu.KV, c Config) error {
	var err error
	switch kv.Key {
	case "HeaderDigest":
		p.HeaderDigest, err = digest(kv.Value, c.HeaderDigest)
	case "DataDigest":
		p.DataDigest, err = digest(kv.Value, false)
	case "MaxRecvDataSegmentLength":
		p.MaxXmitDataSegmentLength, err = number(kv.Value, 512, pdu.HardMaxDataSegment)
	case "MaxBurstLength":
		p.MaxBurstLength, err = number(kv.Value, 512, c.MaxBurstLength)
	case "FirstBurstLength":
		p.FirstBurstLength, err = number(kv.Value, 512, c.FirstBurstLength)
	case "InitialR2T":
		p.InitialR2T, err = yesNo(kv.Value)
	case "ImmediateData":
		p.ImmediateData, err = yesNo(kv.Value)
	case "MaxOutstandingR2T":
		p.MaxOutstandingR2T, err = number(kv.Value, 1, 1)
	case "DataPDUInOrder":
		p.DataPDUInOrder, err = yesNo(kv.Value)
	case "DataSequenceInOrder":
		p.DataSequenceInOrder, err = yesNo(kv.Value)
	case "ErrorRecoveryLevel":
		p.ErrorRecoveryLevel, err = number(kv.Value, 0, 0)
	case "MaxConnections":
		p.MaxConnections, err = number(kv.Value, 1, 1)
	case "IFMarker":
		p.IFMarker, err = yesNo(kv.Value)
	case "OFMarker":
		p.OFMarker, err = yesNo(kv.Value)
	case "DefaultTime2Wait":
		p.DefaultTime2Wait, err = number(kv.Value, 0, 3600)
	case "DefaultTime2Retain":
		p.DefaultTime2Retain, err = number(kv.Value, 0, 3600)
	}
	if err != nil {
		return fmt.Errorf("%w: %s=%q: %v", ErrNegotiation, kv.Key, kv.Value, err)
	}
	return nil
}

// check refuses results Linux's iscsi_tcp cannot run with.
func (p *Params) check() error {
	switch {
	case !p.DataPDUInOrder || !p.DataSequenceInOrder:
		return fmt.Errorf("%w: out-of-order data", ErrNegotiation)
	case p.IFMarker || p.OFMarker:
		return fmt.Errorf("%w: markers", ErrNegotiation)
	case p.FirstBurstLength > p.MaxBurstLength:
		return fmt.Errorf("%w: FirstBurstLength %d > MaxBurstLength %d", ErrNegotiation, p.FirstBurstLength, p.MaxBurstLength)
	}
	return nil
}

func digest(v string, crcOffered bool) (bool, error) {
	switch {
	case v == "None":
		return false, nil
	case v == "CRC32C" && crcOffered:
		return true, nil
	}
	return false, fmt.Errorf("not offered")
}

func number(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want a number in [%d, %d]", lo, hi)
	}
	return n, nil
}

func yesNo(v string) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return false, fmt.Errorf("want Yes or No")
}
