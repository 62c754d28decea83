package iscsi

import (
	"encoding/binary"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/iscsi/scsi"
)

// residual compares the data the command produced or needed with the
// Expected Data Transfer Length: flags and count for the response.
func residual(have, edtl int) (flags byte, count uint32) {
	switch {
	case have > edtl:
		return pdu.FlagOverflow, uint32(have - edtl)
	case have < edtl:
		return pdu.FlagUnder, uint32(edtl - have)
	}
	return 0, 0
}

// dataIn sends a good command's data as Data-In PDUs, the last one
// carrying the status, or a bare SCSI Response when there is none.
func (c *conn) dataIn(req *pdu.PDU, r scsi.Result) error {
	edtl := int(req.U32(pdu.OffEDTL))
	if req.Flags()&pdu.FlagRead == 0 {
		edtl = 0 // no Data-In expected
	}
	data := r.Data
	if len(data) > edtl {
		data = data[:edtl]
	}
	if len(data) == 0 {
		return c.respond(req, r, len(r.Data))
	}
	flags, count := residual(len(r.Data), edtl)
	seg := c.wlimits.MaxDataSegmentLength
	var sn uint32
	for off := 0; off < len(data); off += seg {
		chunk := data[off:min(off+seg, len(data))]
		p := pdu.New(pdu.OpDataIn, 0)
		p.SetLUN(req.LUN())
		p.SetITT(req.ITT())
		p.SetU32(pdu.OffTTT, pdu.ReservedTag)
		p.SetU32(pdu.OffDataSN, sn)
		p.SetU32(pdu.OffBufferOffset, uint32(off))
		p.Data = chunk
		sn++
		if off+len(chunk) < len(data) {
			if err := c.sendData(p); err != nil {
				return err
			}
			continue
		}
		p.SetFlags(pdu.FlagFinal | pdu.FlagStatus | flags)
		p.Header[3] = r.Status
		p.SetU32(pdu.OffResidual, count)
		return c.send(p, true)
	}
	return nil
}

// respond sends a SCSI Response with status and sense; the residual
// compares have, the bytes the command transferred or asked for, with
// the Expected Data Transfer Length.
func (c *conn) respond(req *pdu.PDU, r scsi.Result, have int) error {
	edtl := int(req.U32(pdu.OffEDTL))
	flags, count := residual(have, edtl)
	p := pdu.New(pdu.OpSCSIResponse, pdu.FlagFinal|flags)
	p.Header[2] = 0 // command completed at target
	p.Header[3] = r.Status
	p.SetITT(req.ITT())
	p.SetU32(pdu.OffResidual, count)
	if len(r.Sense) > 0 {
		p.Data = binary.BigEndian.AppendUint16(nil, uint16(len(r.Sense)))
		p.Data = append(p.Data, r.Sense...)
	}
	return c.send(p, true)
}
