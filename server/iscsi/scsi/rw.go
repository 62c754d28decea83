package scsi

import (
	"bytes"
	"encoding/binary"
)

const (
	maxCompareAndWrite = 255     // blocks
	maxUnmapBlocks     = 1 << 20 // per UNMAP command (512 MiB)
	maxUnmapDescs      = 256
)

// lbaArgs decodes LOGICAL BLOCK ADDRESS and TRANSFER LENGTH for the
// 6, 10, 12 and 16-byte layouts READ, WRITE, VERIFY, WRITE SAME and
// SYNCHRONIZE CACHE share.
func lbaArgs(cdb []byte) (lba uint64, n uint64) {
	switch cdb[0] >> 5 {
	case 0:
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		if n = uint64(cdb[4]); n == 0 {
			n = 256
		}
	case 1, 2:
		lba, n = uint64(be32(cdb[2:6])), uint64(be16(cdb[7:9]))
	case 5:
		lba, n = uint64(be32(cdb[2:6])), uint64(be32(cdb[6:10]))
	default:
		lba, n = be64(cdb[2:10]), uint64(be32(cdb[10:14]))
	}
	return lba, n
}

// inRange reports whether blocks [lba, lba+n) exist.
func (d *Device) inRange(lba, n uint64) bool {
	total := d.blocks()
	return lba <= total && n <= total-lba
}

// checkRW validates protection bits, length and range of a READ, WRITE
// or VERIFY.
func (d *Device) checkRW(cdb []byte) (lba, n uint64, r *Result) {
	lba, n = lbaArgs(cdb)
	if cdb[0]>>5 != 0 && cdb[1]>>5 != 0 { // RDPROTECT/WRPROTECT/VRPROTECT: no protection information
		res := invalidField()
		return 0, 0, &res
	}
	if !d.inRange(lba, n) {
		res := outOfRange()
		return 0, 0, &res
	}
	if n > MaxTransferBlocks {
		res := invalidField()
		return 0, 0, &res
	}
	return lba, n, nil
}

func readCmd(d *Device, cdb, _ []byte) Result {
	lba, n, r := d.checkRW(cdb)
	if r != nil {
		return *r
	}
	buf := make([]byte, n*BlockSize)
	if _, err := d.Store.ReadAt(buf, int64(lba*BlockSize)); err != nil {
		return checkCondition(senseMediumError, ascReadError)
	}
	return good(buf)
}

func writeCmd(d *Device, cdb, out []byte) Result {
	lba, n, r := d.checkRW(cdb)
	if r != nil {
		return *r
	}
	if d.ReadOnly {
		return checkCondition(senseDataProtect, ascWriteProtected)
	}
	// A transport may deliver less than the CDB asks for (iSCSI EDTL
	// below it): write only what arrived.
	size := min(n*BlockSize, uint64(len(out)))
	fua := cdb[0]>>5 != 0 && cdb[1]&0x08 != 0 || cdb[0] == 0x2e || cdb[0] == 0xae || cdb[0] == 0x8e
	if err := d.write(out[:size], int64(lba*BlockSize), fua); err != nil {
		return checkCondition(senseMediumError, ascWriteError)
	}
	return good(nil)
}

// write stores p at off; with fua it reaches stable storage first.
func (d *Device) write(p []byte, off int64, fua bool) error {
	if len(p) == 0 {
		return nil
	}
	if fua {
		if fw, ok := d.Store.(FUAWriter); ok {
			_, err := fw.WriteAtFUA(p, off)
			return err
		}
	}
	if _, err := d.Store.WriteAt(p, off); err != nil {
		return err
	}
	if fua {
		return d.Store.Sync()
	}
	return nil
}

func verifyCmd(d *Device, cdb, out []byte) Result {
	lba, n, r := d.checkRW(cdb)
	if r != nil {
		return *r
	}
	switch (cdb[1] >> 1) & 3 { // BYTCHK
	case 0:
		return good(nil)
	case 1:
		return d.compare(lba, n, out, false)
	case 3:
		return d.compare(lba, n, out, true)
	}
	return invalidField()
}

// compare checks n blocks at lba against out (one block repeated when
// same is set) and reports MISCOMPARE at the first differing byte.
func (d *Device) compare(lba, n uint64, out []byte, same bool) Result {
	want := n * BlockSize
	if same {
		want = BlockSize
	}
	if uint64(len(out)) < want {
		return checkCondition(senseIllegalRequest, ascParamListLength)
	}
	buf := make([]byte, n*BlockSize)
	if _, err := d.Store.ReadAt(buf, int64(lba*BlockSize)); err != nil {
		return checkCondition(senseMediumError, ascReadError)
	}
	for i := uint64(0); i < n; i++ {
		blk := buf[i*BlockSize : (i+1)*BlockSize]
		ref := out[:BlockSize]
		if !same {
			ref = out[i*BlockSize : (i+1)*BlockSize]
		}
		if !bytes.Equal(blk, ref) {
			return miscompare(i*BlockSize + firstDiff(blk, ref))
		}
	}
	return good(nil)
}

func firstDiff(a, b []byte) uint64 {
	for i := range a {
		if a[i] != b[i] {
			return uint64(i)
		}
	}
	return 0
}

func miscompare(offset uint64) Result {
	s := Sense(senseMiscompare, ascMiscompare)
	s[0] |= 0x80 // VALID: INFORMATION holds the offset
	binary.BigEndian.PutUint32(s[3:7], uint32(offset))
	return Result{Status: StatusCheckCondition, Sense: s}
}

// prefetch handles PRE-FETCH 10/16: the data is a page-cache read
// away already, so it only checks the range (CONDITION MET would need
// a cache size to promise).
func prefetch(d *Device, cdb, _ []byte) Result {
	lba, n := lbaArgs(cdb)
	if !d.inRange(lba, n) {
		return outOfRange()
	}
	return good(nil)
}

func syncCache(d *Device, cdb, _ []byte) Result {
	lba, n := lbaArgs(cdb)
	if !d.inRange(lba, n) {
		return outOfRange()
	}
	if err := d.Store.Sync(); err != nil {
		return checkCondition(senseMediumError, ascWriteError)
	}
	return good(nil)
}

func compareAndWrite(d *Device, cdb, out []byte) Result {
	lba, n := be64(cdb[2:10]), uint64(cdb[13])
	// Zero blocks with Data-Out attached means a length that did not
	// fit the one-byte field (libiscsi sends 256 as 0): refuse it.
	if cdb[1]>>5 != 0 || n > maxCompareAndWrite || n == 0 && len(out) > 0 {
		return invalidField()
	}
	if !d.inRange(lba, n) {
		return outOfRange()
	}
	if d.ReadOnly {
		return checkCondition(senseDataProtect, ascWriteProtected)
	}
	if uint64(len(out)) < 2*n*BlockSize {
		return checkCondition(senseIllegalRequest, ascParamListLength)
	}
	d.cawMu.Lock()
	defer d.cawMu.Unlock()
	if r := d.compare(lba, n, out, false); r.Status != StatusGood {
		return r
	}
	if err := d.write(out[n*BlockSize:2*n*BlockSize], int64(lba*BlockSize), cdb[1]&0x08 != 0); err != nil {
		return checkCondition(senseMediumError, ascWriteError)
	}
	return good(nil)
}

// DataOutLength reports how many bytes of Data-Out the command's CDB
// asks for (SPC-4 SPDTL), and false for commands without Data-Out.
func DataOutLength(cdb []byte) (int, bool) {
	if len(cdb) < cdbLength(cdb[0]) {
		return 0, false
	}
	switch cdb[0] {
	case 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e:
		_, n := lbaArgs(cdb)
		return int(min(n, MaxTransferBlocks+1)) * BlockSize, true
	case 0x2f, 0xaf, 0x8f:
		_, n := lbaArgs(cdb)
		switch (cdb[1] >> 1) & 3 {
		case 1:
			return int(min(n, MaxTransferBlocks+1)) * BlockSize, true
		case 3:
			return BlockSize, true
		}
		return 0, true
	case 0x41, 0x93:
		if cdb[0] == 0x93 && cdb[1]&1 != 0 { // NDOB
			return 0, true
		}
		return BlockSize, true
	case 0x42:
		return be16(cdb[7:9]), true
	case 0x89:
		return 2 * int(cdb[13]) * BlockSize, true
	}
	return 0, false
}
