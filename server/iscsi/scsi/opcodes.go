package scsi

import "encoding/binary"

// opInfo describes one supported command for REPORT SUPPORTED
// OPERATION CODES (SPC-4 6.35): its service action, if any, and the
// CDB usage bitmap (bits the device server looks at).
type opInfo struct {
	op       byte
	sa       uint16
	servactv bool
	usage    []byte
}

func u(b ...byte) []byte { return b }

var lba16 = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// supportedOps lists the commands the device implements, in opcode order.
var supportedOps = []opInfo{
	{op: 0x00, usage: u(0xff, 0, 0, 0, 0, 0x07)},                                                                         // TEST UNIT READY
	{op: 0x03, usage: u(0xff, 0, 0, 0, 0xff, 0x07)},                                                                      // REQUEST SENSE
	{op: 0x08, usage: u(0xff, 0x1f, 0xff, 0xff, 0xff, 0x07)},                                                             // READ (6)
	{op: 0x0a, usage: u(0xff, 0x1f, 0xff, 0xff, 0xff, 0x07)},                                                             // WRITE (6)
	{op: 0x12, usage: u(0xff, 0x01, 0xff, 0xff, 0xff, 0x07)},                                                             // INQUIRY
	{op: 0x1a, usage: u(0xff, 0x08, 0xff, 0xff, 0xff, 0x07)},                                                             // MODE SENSE (6)
	{op: 0x1b, usage: u(0xff, 0x01, 0, 0x0f, 0xf7, 0x07)},                                                                // START STOP UNIT
	{op: 0x1e, usage: u(0xff, 0, 0, 0, 0x03, 0x07)},                                                                      // PREVENT ALLOW MEDIUM REMOVAL
	{op: 0x25, usage: u(0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x07)},                                                             // READ CAPACITY (10)
	{op: 0x28, usage: u(0xff, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                     // READ (10)
	{op: 0x2a, usage: u(0xff, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                     // WRITE (10)
	{op: 0x2e, usage: u(0xff, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                     // WRITE AND VERIFY (10)
	{op: 0x2f, usage: u(0xff, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                     // VERIFY (10)
	{op: 0x34, usage: u(0xff, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                     // PRE-FETCH (10)
	{op: 0x35, usage: u(0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                        // SYNCHRONIZE CACHE (10)
	{op: 0x41, usage: u(0xff, 0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07)},                                     // WRITE SAME (10)
	{op: 0x42, usage: u(0xff, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0x07)},                                                    // UNMAP
	{op: 0x5a, usage: u(0xff, 0x08, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07)},                                              // MODE SENSE (10)
	{op: 0x88, usage: cat(u(0xff, 0x18), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                  // READ (16)
	{op: 0x89, usage: cat(u(0xff, 0x18), lba16, u(0, 0, 0, 0xff, 0x1f, 0x07))},                                           // COMPARE AND WRITE
	{op: 0x8a, usage: cat(u(0xff, 0x18), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                  // WRITE (16)
	{op: 0x8e, usage: cat(u(0xff, 0x12), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                  // WRITE AND VERIFY (16)
	{op: 0x8f, usage: cat(u(0xff, 0x16), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                  // VERIFY (16)
	{op: 0x90, usage: cat(u(0xff, 0x02), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                  // PRE-FETCH (16)
	{op: 0x91, usage: cat(u(0xff, 0), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                     // SYNCHRONIZE CACHE (16)
	{op: 0x93, usage: cat(u(0xff, 0x09), lba16, u(0xff, 0xff, 0xff, 0xff, 0x1f, 0x07))},                                  // WRITE SAME (16)
	{op: 0x9e, sa: 0x10, servactv: true, usage: cat(u(0xff, 0x1f), make([]byte, 8), u(0xff, 0xff, 0xff, 0xff, 0, 0x07))}, // READ CAPACITY (16)
	{op: 0x9e, sa: 0x12, servactv: true, usage: cat(u(0xff, 0x1f), lba16, u(0xff, 0xff, 0xff, 0xff, 0, 0x07))},           // GET LBA STATUS
	{op: 0xa0, usage: u(0xff, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07)},                                        // REPORT LUNS
	{op: 0xa3, sa: 0x0c, servactv: true, usage: u(0xff, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07)},  // REPORT SUPPORTED OPERATION CODES
	{op: 0xa8, usage: u(0xff, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07)},                         // READ (12)
	{op: 0xaa, usage: u(0xff, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07)},                         // WRITE (12)
	{op: 0xae, usage: u(0xff, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07)},                         // WRITE AND VERIFY (12)
	{op: 0xaf, usage: u(0xff, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07)},                         // VERIFY (12)
}

// maintenanceIn handles MAINTENANCE IN; only REPORT SUPPORTED
// OPERATION CODES is implemented.
func maintenanceIn(_ *Device, cdb, _ []byte) Result {
	if cdb[1]&0x1f != 0x0c {
		return invalidField()
	}
	rctd := cdb[2]&0x80 != 0
	alloc := int(be32(cdb[6:10]))
	switch opts := cdb[2] & 0x07; opts {
	case 0:
		return allocate(allOpcodes(rctd), alloc)
	case 1, 2, 3:
		b, ok := oneOpcode(opts, cdb[3], uint16(be16(cdb[4:6])), rctd)
		if !ok {
			return invalidField()
		}
		return allocate(b, alloc)
	}
	return invalidField()
}

// timeouts is an empty command timeouts descriptor (SPC-4 6.35.4).
func timeouts() []byte { return []byte{0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} }

func allOpcodes(rctd bool) []byte {
	b := make([]byte, 4)
	for _, o := range supportedOps {
		d := make([]byte, 8)
		d[0] = o.op
		binary.BigEndian.PutUint16(d[2:], o.sa)
		if o.servactv {
			d[5] |= 0x01
		}
		if rctd {
			d[5] |= 0x02 // CTDP
		}
		binary.BigEndian.PutUint16(d[6:], uint16(len(o.usage)))
		b = append(b, d...)
		if rctd {
			b = append(b, timeouts()...)
		}
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// oneOpcode answers reporting options 1 (opcode), 2 (opcode and service
// action) and 3 (either). ok is false for a request the options forbid.
func oneOpcode(opts, op byte, sa uint16, rctd bool) ([]byte, bool) {
	var found *opInfo
	known, hasSA := false, false
	for i := range supportedOps {
		o := &supportedOps[i]
		if o.op == op {
			known, hasSA = true, o.servactv
			if !o.servactv || o.sa == sa {
				found = o
			}
		}
	}
	if opts == 1 && hasSA || opts == 2 && known && !hasSA {
		return nil, false
	}
	b := make([]byte, 4)
	if found == nil {
		b[1] = 0x01 // not supported
		return b, true
	}
	b[1] = 0x03 // supported, conforming to the standard
	if rctd {
		b[1] |= 0x80 // CTDP
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(found.usage)))
	b = append(b, found.usage...)
	if rctd {
		b = append(b, timeouts()...)
	}
	return b, true
}
