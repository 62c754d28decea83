package scsi

import "encoding/binary"

// MapReporter is implemented by stores that know which ranges are
// allocated (SEEK_DATA/SEEK_HOLE); it enables GET LBA STATUS.
type MapReporter interface {
	// Extent reports whether the byte at off is allocated and how many
	// bytes from off share that state (at least 1, up to Size()-off).
	Extent(off int64) (mapped bool, n int64, err error)
}

// maxLBAStatusDescriptors bounds one GET LBA STATUS answer.
const maxLBAStatusDescriptors = 64

// getLBAStatus handles GET LBA STATUS (SBC-3 5.6).
func getLBAStatus(d *Device, cdb []byte) Result {
	mr, ok := d.Store.(MapReporter)
	if !ok {
		return checkCondition(senseIllegalRequest, ascInvalidFieldInCDB)
	}
	lba, alloc := be64(cdb[2:10]), int(be32(cdb[10:14]))
	total := d.blocks()
	if lba >= total {
		return outOfRange()
	}
	b := make([]byte, 8)
	for i := 0; i < maxLBAStatusDescriptors && lba < total && len(b)+16 <= max(alloc, 24); i++ {
		mapped, n, err := mr.Extent(int64(lba * BlockSize))
		if err != nil {
			return checkCondition(senseMediumError, ascReadError)
		}
		blocks := max(uint64(n)/BlockSize, 1)
		blocks = min(blocks, total-lba, 0xffffffff)
		desc := make([]byte, 16)
		binary.BigEndian.PutUint64(desc, lba)
		binary.BigEndian.PutUint32(desc[8:], uint32(blocks))
		if !mapped {
			desc[12] = 1 // deallocated
		}
		b = append(b, desc...)
		lba += blocks
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return allocate(b, alloc)
}
