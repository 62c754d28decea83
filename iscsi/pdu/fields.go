package pdu

// Byte offsets of opcode-specific 32-bit BHS fields (RFC 7143 section 11).
const (
	OffTTT          = 20 // Target Transfer Tag; Data-Out, NOP, R2T, Data-In, Text
	OffEDTL         = 20 // Expected Data Transfer Length; SCSI Command
	OffRefTaskTag   = 20 // Referenced Task Tag; Task Management Request
	OffCmdSN        = 24 // initiator PDUs
	OffStatSN       = 24 // target PDUs
	OffExpStatSN    = 28 // initiator PDUs
	OffExpCmdSN     = 28 // target PDUs
	OffMaxCmdSN     = 32 // target PDUs
	OffRefCmdSN     = 32 // Task Management Request
	OffExpDataSN    = 36 // SCSI Response, Task Management Request
	OffDataSN       = 36 // Data-In, Data-Out
	OffR2TSN        = 36 // R2T
	OffBufferOffset = 40 // Data-In, Data-Out, R2T
	OffResidual     = 44 // Data-In, SCSI Response
	OffDesiredLen   = 44 // R2T
	OffBidiResidual = 40 // SCSI Response
)

// CDB returns the 16-byte CDB field of a SCSI Command (bytes 32-47).
func (p *PDU) CDB() []byte { return p.Header[32:48] }

// TTT is the Target Transfer Tag.
func (p *PDU) TTT() uint32 { return p.U32(OffTTT) }

// CmdSN is the command sequence number of an initiator PDU.
func (p *PDU) CmdSN() uint32 { return p.U32(OffCmdSN) }

// ExpStatSN is the initiator's expected StatSN.
func (p *PDU) ExpStatSN() uint32 { return p.U32(OffExpStatSN) }

// SetSN sets StatSN, ExpCmdSN and MaxCmdSN of a target PDU.
func (p *PDU) SetSN(statSN, expCmdSN, maxCmdSN uint32) {
	p.SetU32(OffStatSN, statSN)
	p.SetU32(OffExpCmdSN, expCmdSN)
	p.SetU32(OffMaxCmdSN, maxCmdSN)
}

// Login stages (RFC 7143 section 11.12.3).
const (
	StageSecurity    = 0
	StageOperational = 1
	StageFullFeature = 3
)

// LoginCSG is the current stage of a Login Request or Response.
func (p *PDU) LoginCSG() int { return int(p.Header[1]>>2) & 3 }

// LoginNSG is the next stage of a Login Request or Response.
func (p *PDU) LoginNSG() int { return int(p.Header[1]) & 3 }

// Transit reports whether the T bit of a Login PDU is set.
func (p *PDU) Transit() bool { return p.Header[1]&FlagTransit != 0 }

// Continue reports whether the C bit of a Login or Text PDU is set.
func (p *PDU) Continue() bool { return p.Header[1]&FlagContinue != 0 }

// SetLoginStages sets T, CSG and NSG of a Login Response.
func (p *PDU) SetLoginStages(transit bool, csg, nsg int) {
	f := byte(csg&3)<<2 | byte(nsg&3)
	if transit {
		f |= FlagTransit
	} else {
		f &^= 3
	}
	p.Header[1] = f
}

// ISID returns the 6-byte initiator session ID of a Login PDU.
func (p *PDU) ISID() [6]byte { return [6]byte(p.Header[8:14]) }

// TSIH is the target session identifying handle of a Login PDU.
func (p *PDU) TSIH() uint16 { return uint16(p.Header[14])<<8 | uint16(p.Header[15]) }

// SetTSIH sets the TSIH of a Login PDU.
func (p *PDU) SetTSIH(v uint16) { p.Header[14], p.Header[15] = byte(v>>8), byte(v) }

// LoginStatus returns the status class and detail of a Login Response.
func (p *PDU) LoginStatus() (class, detail byte) { return p.Header[36], p.Header[37] }

// SetLoginStatus sets the status class and detail of a Login Response.
func (p *PDU) SetLoginStatus(class, detail byte) { p.Header[36], p.Header[37] = class, detail }

// TMFunction is the function code of a Task Management Request.
func (p *PDU) TMFunction() byte { return p.Header[1] & 0x7f }

// LogoutReason is the reason code of a Logout Request.
func (p *PDU) LogoutReason() byte { return p.Header[1] & 0x7f }
