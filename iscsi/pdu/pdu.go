// Package pdu encodes and decodes iSCSI Protocol Data Units (RFC 7143
// section 11): the 48-byte Basic Header Segment, additional header
// segments, the padded data segment, optional CRC32C digests, and the
// key=value text carried by Login and Text PDUs.
//
// # Safety
//
// [Read] bounds every length field before allocating: the data segment
// may not exceed [Limits.MaxDataSegmentLength] (itself capped at
// [HardMaxDataSegment]), and additional header segments are at most 1020
// bytes. Decoding never panics on any input; FuzzRead checks this.
package pdu

import (
	"encoding/binary"
	"errors"
)

// Opcode identifies a PDU type (RFC 7143 section 11.2.1.2).
type Opcode uint8

// Initiator opcodes.
const (
	OpNOPOut      Opcode = 0x00
	OpSCSICommand Opcode = 0x01
	OpTaskMgmtReq Opcode = 0x02
	OpLoginReq    Opcode = 0x03
	OpTextReq     Opcode = 0x04
	OpDataOut     Opcode = 0x05
	OpLogoutReq   Opcode = 0x06
	OpSNACKReq    Opcode = 0x10
)

// Target opcodes.
const (
	OpNOPIn        Opcode = 0x20
	OpSCSIResponse Opcode = 0x21
	OpTaskMgmtResp Opcode = 0x22
	OpLoginResp    Opcode = 0x23
	OpTextResp     Opcode = 0x24
	OpDataIn       Opcode = 0x25
	OpLogoutResp   Opcode = 0x26
	OpR2T          Opcode = 0x31
	OpAsyncMessage Opcode = 0x32
	OpReject       Opcode = 0x3f
)

var opNames = map[Opcode]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI-Command", OpTaskMgmtReq: "TMF-Request",
	OpLoginReq: "Login-Request", OpTextReq: "Text-Request", OpDataOut: "Data-Out",
	OpLogoutReq: "Logout-Request", OpSNACKReq: "SNACK", OpNOPIn: "NOP-In",
	OpSCSIResponse: "SCSI-Response", OpTaskMgmtResp: "TMF-Response",
	OpLoginResp: "Login-Response", OpTextResp: "Text-Response", OpDataIn: "Data-In",
	OpLogoutResp: "Logout-Response", OpR2T: "R2T", OpAsyncMessage: "Async-Message",
	OpReject: "Reject",
}

func (o Opcode) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return "opcode-0x" + string("0123456789abcdef"[o>>4]) + string("0123456789abcdef"[o&0xf])
}

// BHSLength is the size of the Basic Header Segment.
const BHSLength = 48

// Flag bits in byte 1 of the BHS.
const (
	FlagFinal    = 0x80 // F: final PDU of a sequence
	FlagRead     = 0x40 // R (SCSI Command)
	FlagWrite    = 0x20 // W (SCSI Command)
	FlagContinue = 0x40 // C (Login/Text)
	FlagTransit  = 0x80 // T (Login)
	FlagAck      = 0x40 // A (Data-In)
	FlagOverflow = 0x04 // O (SCSI Response, Data-In)
	FlagUnder    = 0x02 // U (SCSI Response, Data-In)
	FlagStatus   = 0x01 // S (Data-In)
)

// ReservedTag is the all-ones Initiator/Target Task Tag.
const ReservedTag = 0xffffffff

// Errors returned by [Read] and [ParseText].
var (
	// ErrDataTooLong: a data segment exceeds the negotiated limit.
	ErrDataTooLong = errors.New("pdu: data segment longer than MaxRecvDataSegmentLength")
	// ErrHeaderDigest: the header CRC32C does not match.
	ErrHeaderDigest = errors.New("pdu: header digest mismatch")
	// ErrDataDigest: the data CRC32C does not match.
	ErrDataDigest = errors.New("pdu: data digest mismatch")
	// ErrMalformedText: login or text data is not key=value pairs.
	ErrMalformedText = errors.New("pdu: malformed key=value text")
	// ErrTextLimit: too many keys, or a key or value too long.
	ErrTextLimit = errors.New("pdu: key=value text exceeds limits")
	// ErrDuplicateKey: a key appears twice in one text.
	ErrDuplicateKey = errors.New("pdu: duplicate key")
)

// PDU is one iSCSI PDU. Header holds the BHS verbatim; accessors read
// and write its fields at the offsets RFC 7143 section 11 gives.
// TotalAHSLength and DataSegmentLength are derived from AHS and Data
// when the PDU is written.
type PDU struct {
	Header [BHSLength]byte
	AHS    []byte // additional header segments, multiple of 4 bytes
	Data   []byte // data segment, unpadded
}

// New returns a PDU with the opcode and flags set.
func New(op Opcode, flags byte) *PDU {
	p := new(PDU)
	p.Header[0] = byte(op)
	p.Header[1] = flags
	return p
}

// Opcode reports the opcode (the I bit removed).
func (p *PDU) Opcode() Opcode { return Opcode(p.Header[0] & 0x3f) }

// Immediate reports whether the I bit (immediate delivery) is set.
func (p *PDU) Immediate() bool { return p.Header[0]&0x40 != 0 }

// SetImmediate sets the I bit.
func (p *PDU) SetImmediate(v bool) { setBit(&p.Header[0], 0x40, v) }

// Flags is byte 1 of the BHS.
func (p *PDU) Flags() byte { return p.Header[1] }

// SetFlags sets byte 1 of the BHS.
func (p *PDU) SetFlags(f byte) { p.Header[1] = f }

// Final reports whether the F (or T, for Login) bit is set.
func (p *PDU) Final() bool { return p.Header[1]&FlagFinal != 0 }

// TotalAHSLength is the AHS length in 4-byte words as the header states it.
func (p *PDU) TotalAHSLength() int { return int(p.Header[4]) }

// DataSegmentLength is the data length as the header states it.
func (p *PDU) DataSegmentLength() int {
	return int(p.Header[5])<<16 | int(p.Header[6])<<8 | int(p.Header[7])
}

// LUN returns bytes 8-15 (LUN, or ISID+TSIH for Login).
func (p *PDU) LUN() uint64 { return binary.BigEndian.Uint64(p.Header[8:16]) }

// SetLUN sets bytes 8-15.
func (p *PDU) SetLUN(v uint64) { binary.BigEndian.PutUint64(p.Header[8:16], v) }

// ITT is the Initiator Task Tag (bytes 16-19).
func (p *PDU) ITT() uint32 { return p.U32(16) }

// SetITT sets the Initiator Task Tag.
func (p *PDU) SetITT(v uint32) { p.SetU32(16, v) }

// U32 reads the big-endian word at byte offset off (20..44, 4-aligned
// offsets hold opcode-specific fields: TTT, CmdSN, StatSN, ...).
func (p *PDU) U32(off int) uint32 { return binary.BigEndian.Uint32(p.Header[off : off+4]) }

// SetU32 writes the big-endian word at byte offset off.
func (p *PDU) SetU32(off int, v uint32) { binary.BigEndian.PutUint32(p.Header[off:off+4], v) }

func setBit(b *byte, mask byte, v bool) {
	if v {
		*b |= mask
	} else {
		*b &^= mask
	}
}
