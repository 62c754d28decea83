package scsi

import (
	"crypto/sha256"
	"encoding/binary"
)

const (
	vendorID  = "SEALROOT"
	productID = "sealroot disk   "
	revision  = "0001"
)

// vpdPages lists the supported VPD pages in ascending order.
var vpdPages = []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}

func inquiry(d *Device, cdb, _ []byte) Result {
	alloc := be16(cdb[3:5])
	if cdb[1]&1 == 0 {
		if cdb[2] != 0 {
			return invalidField()
		}
		return allocate(standardInquiry(), alloc)
	}
	var body []byte
	switch cdb[2] {
	case 0x00:
		body = vpdPages
	case 0x80:
		body = []byte(d.serial())
	case 0x83:
		body = d.deviceIdentification()
	case 0xb0:
		body = blockLimits()
	case 0xb1:
		body = make([]byte, 0x3c)
		body[1] = 1 // MEDIUM ROTATION RATE: non-rotating
	case 0xb2:
		// LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type thin.
		body = []byte{0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0}
	default:
		return invalidField()
	}
	page := make([]byte, 4, 4+len(body))
	page[1] = cdb[2]
	binary.BigEndian.PutUint16(page[2:], uint16(len(body)))
	return allocate(append(page, body...), alloc)
}

func standardInquiry() []byte {
	b := make([]byte, 66)
	b[2] = 0x06        // VERSION: SPC-4
	b[3] = 0x02 | 0x10 // RESPONSE DATA FORMAT 2, HISUP
	b[4] = byte(len(b) - 5)
	b[7] = 0x02 // CMDQUE
	copy(b[8:16], vendorID)
	copy(b[16:32], productID)
	copy(b[32:36], revision)
	// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
	for i, v := range []uint16{0x00a0, 0x0960, 0x0460, 0x04c0} {
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return b
}

func (d *Device) serial() string {
	if d.Serial == "" {
		return "0"
	}
	return d.Serial
}

// deviceIdentification returns the VPD 0x83 designators: an NAA IEEE
// Registered Extended identifier derived from the serial, and a T10
// vendor identifier.
func (d *Device) deviceIdentification() []byte {
	sum := sha256.Sum256([]byte(d.serial()))
	naa := make([]byte, 16)
	copy(naa, sum[:])
	naa[0] = 0x60 | naa[0]&0x0f // NAA 6
	t10 := []byte(vendorID + d.serial())
	var b []byte
	b = append(b, 0x01, 0x03, 0, byte(len(naa))) // binary, LU, NAA
	b = append(b, naa...)
	b = append(b, 0x02, 0x01, 0, byte(len(t10))) // ASCII, LU, T10 vendor ID
	return append(b, t10...)
}

func blockLimits() []byte {
	b := make([]byte, 0x3c)
	b[0] = 0x01                                           // WSNZ: WRITE SAME with zero blocks is refused
	b[1] = maxCompareAndWrite                             // MAXIMUM COMPARE AND WRITE LENGTH
	binary.BigEndian.PutUint16(b[2:], 8)                  // OPTIMAL TRANSFER LENGTH GRANULARITY (4 KiB)
	binary.BigEndian.PutUint32(b[4:], MaxTransferBlocks)  // MAXIMUM TRANSFER LENGTH
	binary.BigEndian.PutUint32(b[8:], 2048)               // OPTIMAL TRANSFER LENGTH
	binary.BigEndian.PutUint32(b[16:], maxUnmapBlocks)    // MAXIMUM UNMAP LBA COUNT
	binary.BigEndian.PutUint32(b[20:], maxUnmapDescs)     // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
	binary.BigEndian.PutUint32(b[24:], 8)                 // OPTIMAL UNMAP GRANULARITY
	binary.BigEndian.PutUint64(b[32:], MaxTransferBlocks) // MAXIMUM WRITE SAME LENGTH
	return b
}

func reportLUNs(_ *Device, cdb, _ []byte) Result {
	if cdb[2] > 2 {
		return invalidField()
	}
	alloc := int(be32(cdb[6:10]))
	if alloc < 16 {
		return invalidField()
	}
	b := make([]byte, 16) // one LUN: 0
	b[3] = 8
	return allocate(b, alloc)
}

func readCapacity10(d *Device, cdb, _ []byte) Result {
	b := make([]byte, 8)
	last := d.blocks() - 1
	if last > 0xffffffff {
		last = 0xffffffff
	}
	binary.BigEndian.PutUint32(b, uint32(last))
	binary.BigEndian.PutUint32(b[4:], BlockSize)
	return good(b)
}

func serviceActionIn16(d *Device, cdb, _ []byte) Result {
	switch cdb[1] & 0x1f {
	case 0x10: // READ CAPACITY (16)
	case 0x12:
		return getLBAStatus(d, cdb)
	default:
		return invalidField()
	}
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b, d.blocks()-1)
	binary.BigEndian.PutUint32(b[8:], BlockSize)
	b[14] = 0x80 | 0x40 // LBPME, LBPRZ
	return allocate(b, int(be32(cdb[10:14])))
}
