package scsi

import "encoding/binary"

// Mode pages (SBC-3 6.5).
const (
	pageCaching = 0x08
	pageControl = 0x0a
	pageAll     = 0x3f
)

// modePage returns the page, or its changeable mask when pc is 1.
func modePage(code byte, pc byte) []byte {
	switch code {
	case pageCaching:
		p := make([]byte, 20)
		p[0], p[1] = pageCaching, 18
		if pc != 1 {
			p[2] = 0x04 // WCE: write cache enabled, so Linux sends SYNCHRONIZE CACHE
		}
		return p
	case pageControl:
		p := make([]byte, 12)
		p[0], p[1] = pageControl, 10
		if pc != 1 {
			p[3] = 0x10                                // QUEUE ALGORITHM MODIFIER 1: unrestricted
			binary.BigEndian.PutUint16(p[10:], 0xffff) // EXTENDED SELF-TEST COMPLETION TIME
		}
		return p
	}
	return nil
}

// modePages returns the page data a MODE SENSE asks for, or false.
func modePages(cdb []byte, subpage byte) ([]byte, bool) {
	code, pc := cdb[2]&0x3f, cdb[2]>>6
	if pc == 3 { // saved values not supported
		return nil, false
	}
	if code == pageAll {
		if subpage != 0 && subpage != 0xff {
			return nil, false
		}
		return append(modePage(pageCaching, pc), modePage(pageControl, pc)...), true
	}
	if subpage != 0 {
		return nil, false
	}
	p := modePage(code, pc)
	return p, p != nil
}

func (d *Device) deviceSpecific() byte {
	b := byte(0x10) // DPOFUA
	if d.ReadOnly {
		b |= 0x80 // WP
	}
	return b
}

func (d *Device) blockDescriptor() []byte {
	b := make([]byte, 8)
	n := d.blocks()
	if n > 0xffffffff {
		n = 0xffffffff
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	binary.BigEndian.PutUint32(b[4:], BlockSize) // density 0, block length 24 bits
	return b
}

func modeSense6(d *Device, cdb, _ []byte) Result {
	pages, ok := modePages(cdb, cdb[3])
	if !ok {
		return invalidField()
	}
	h := []byte{0, 0, d.deviceSpecific(), 0}
	if cdb[1]&0x08 == 0 { // DBD clear
		h[3] = 8
		h = append(h, d.blockDescriptor()...)
	}
	b := append(h, pages...)
	b[0] = byte(len(b) - 1)
	return allocate(b, int(cdb[4]))
}

func modeSense10(d *Device, cdb, _ []byte) Result {
	pages, ok := modePages(cdb, cdb[3])
	if !ok {
		return invalidField()
	}
	h := make([]byte, 8)
	h[3] = d.deviceSpecific()
	if cdb[1]&0x08 == 0 {
		h[7] = 8
		h = append(h, d.blockDescriptor()...)
	}
	b := append(h, pages...)
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	return allocate(b, be16(cdb[7:9]))
}
