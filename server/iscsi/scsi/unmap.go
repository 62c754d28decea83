package scsi

import "bytes"

func unmap(d *Device, cdb, out []byte) Result {
	if cdb[1]&1 != 0 { // ANCHOR
		return invalidField()
	}
	plen := be16(cdb[7:9])
	if plen == 0 {
		return good(nil)
	}
	if d.ReadOnly {
		return checkCondition(senseDataProtect, ascWriteProtected)
	}
	if plen < 8 || len(out) < plen {
		return checkCondition(senseIllegalRequest, ascParamListLength)
	}
	out = out[:plen]
	descs := out[8:]
	if dl := be16(out[2:4]); dl < len(descs) {
		descs = descs[:dl]
	}
	if len(descs)/16 > maxUnmapDescs {
		return checkCondition(senseIllegalRequest, ascInvalidFieldParams)
	}
	var total uint64
	for i := 0; i+16 <= len(descs); i += 16 {
		lba, n := be64(descs[i:]), uint64(be32(descs[i+8:]))
		if !d.inRange(lba, n) {
			return outOfRange()
		}
		if total += n; n > maxUnmapBlocks || total > maxUnmapBlocks {
			return checkCondition(senseIllegalRequest, ascInvalidFieldParams)
		}
	}
	for i := 0; i+16 <= len(descs); i += 16 {
		lba, n := be64(descs[i:]), uint64(be32(descs[i+8:]))
		if n == 0 {
			continue
		}
		if err := d.Store.Punch(int64(lba*BlockSize), int64(n*BlockSize)); err != nil {
			return checkCondition(senseMediumError, ascWriteError)
		}
	}
	return good(nil)
}

// writeSame handles WRITE SAME 10 and 16, with the UNMAP and NDOB bits.
func writeSame(d *Device, cdb, out []byte) Result {
	lba, n := lbaArgs(cdb)
	if cdb[1]>>5 != 0 || cdb[1]&0x10 != 0 || n == 0 || n > MaxTransferBlocks { // WRPROTECT, ANCHOR
		return invalidField()
	}
	if !d.inRange(lba, n) {
		return outOfRange()
	}
	if d.ReadOnly {
		return checkCondition(senseDataProtect, ascWriteProtected)
	}
	block := make([]byte, BlockSize)
	if ndob := cdb[0] == 0x93 && cdb[1]&0x01 != 0; !ndob {
		if len(out) < BlockSize {
			return checkCondition(senseIllegalRequest, ascParamListLength)
		}
		copy(block, out)
	}
	off, size := int64(lba*BlockSize), int64(n*BlockSize)
	if cdb[1]&0x08 != 0 && bytes.Equal(block, make([]byte, BlockSize)) {
		if err := d.Store.Punch(off, size); err != nil {
			return checkCondition(senseMediumError, ascWriteError)
		}
		return good(nil)
	}
	buf := bytes.Repeat(block, int(n))
	if err := d.write(buf, off, false); err != nil {
		return checkCondition(senseMediumError, ascWriteError)
	}
	return good(nil)
}
