package scsi

// Sense keys (SPC-4 table 45).
const (
	senseNoSense        = 0x00
	senseMediumError    = 0x03
	senseIllegalRequest = 0x05
	senseDataProtect    = 0x07
	senseMiscompare     = 0x0e
)

// Additional sense code and qualifier pairs (SPC-4 annex D).
const (
	ascNone               = 0x0000
	ascWriteError         = 0x0c00
	ascReadError          = 0x1100
	ascParamListLength    = 0x1a00
	ascMiscompare         = 0x1d00
	ascInvalidOpcode      = 0x2000
	ascLBAOutOfRange      = 0x2100
	ascInvalidFieldInCDB  = 0x2400
	ascInvalidFieldParams = 0x2600
	ascWriteProtected     = 0x2700
)

// Sense builds 18 bytes of fixed-format sense data (SPC-4 4.5.3).
func Sense(key byte, asc uint16) []byte {
	s := make([]byte, 18)
	s[0] = 0x70
	s[2] = key
	s[7] = 10
	s[12], s[13] = byte(asc>>8), byte(asc)
	return s
}

func checkCondition(key byte, asc uint16) Result {
	return Result{Status: StatusCheckCondition, Sense: Sense(key, asc)}
}

func invalidField() Result { return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB) }

func outOfRange() Result { return checkCondition(senseIllegalRequest, ascLBAOutOfRange) }

func requestSense(_ *Device, cdb, _ []byte) Result {
	if cdb[1]&1 != 0 { // DESC: descriptor format not supported
		return invalidField()
	}
	return allocate(Sense(senseNoSense, ascNone), int(cdb[4]))
}
