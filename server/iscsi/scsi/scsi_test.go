package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// memStore is an in-memory BackingStore that counts syncs.
type memStore struct {
	b       []byte
	syncs   int
	punched int64
}

func (m *memStore) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }
func (m *memStore) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
func (m *memStore) Size() int64                              { return int64(len(m.b)) }
func (m *memStore) Sync() error                              { m.syncs++; return nil }
func (m *memStore) Punch(off, n int64) error {
	clear(m.b[off : off+n])
	m.punched += n
	return nil
}

func newDev() (*Device, *memStore) {
	m := &memStore{b: make([]byte, 64*BlockSize)}
	return &Device{Store: m, Serial: "abc"}, m
}

func cdb16(op byte, lba uint64, n uint32, b1 byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, b1
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func senseOf(r Result) (key byte, asc uint16) {
	if len(r.Sense) < 14 {
		return 0, 0
	}
	return r.Sense[2], uint16(r.Sense[12])<<8 | uint16(r.Sense[13])
}

func TestExecuteErrors(t *testing.T) {
	d, _ := newDev()
	tests := []struct {
		name string
		cdb  []byte
		out  []byte
		key  byte
		asc  uint16
	}{
		{"unknown_opcode", []byte{0xd0, 0, 0, 0, 0, 0}, nil, senseIllegalRequest, ascInvalidOpcode},
		{"read16_past_end", cdb16(0x88, 63, 2, 0), nil, senseIllegalRequest, ascLBAOutOfRange},
		{"write16_lba_overflow", cdb16(0x8a, 1<<63, 1<<31, 0), nil, senseIllegalRequest, ascLBAOutOfRange},
		{"read16_rdprotect", cdb16(0x88, 0, 1, 0x20), nil, senseIllegalRequest, ascInvalidFieldInCDB},
		{"inquiry_bad_vpd", []byte{0x12, 1, 0x99, 0, 255, 0}, nil, senseIllegalRequest, ascInvalidFieldInCDB},
		{"verify_miscompare", cdb16(0x8f, 0, 1, 0x02), bytes.Repeat([]byte{1}, BlockSize), senseMiscompare, ascMiscompare},
		{"mode_sense_bad_page", []byte{0x1a, 0, 0x01, 0, 255, 0}, nil, senseIllegalRequest, ascInvalidFieldInCDB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.Execute(tt.cdb, tt.out)
			key, asc := senseOf(r)
			if r.Status != StatusCheckCondition || key != tt.key || asc != tt.asc {
				t.Errorf("Execute(% x) = status %#x sense %#x/%#04x, want %#x/%#04x", tt.cdb[:2], r.Status, key, asc, tt.key, tt.asc)
			}
		})
	}
}

func TestWriteReadFUAUnmap(t *testing.T) {
	d, m := newDev()
	data := bytes.Repeat([]byte("sealroot"), 2*BlockSize/8)
	if r := d.Execute(cdb16(0x8a, 10, 2, 0x08), data); r.Status != StatusGood {
		t.Fatalf("WRITE16 FUA: status %#x sense % x", r.Status, r.Sense)
	}
	if m.syncs != 1 {
		t.Errorf("FUA write synced %d times, want 1", m.syncs)
	}
	r := d.Execute(cdb16(0x88, 10, 2, 0), nil)
	if r.Status != StatusGood || !bytes.Equal(r.Data, data) {
		t.Fatalf("READ16 after WRITE16 differs: status %#x", r.Status)
	}
	param := make([]byte, 24)
	binary.BigEndian.PutUint16(param[2:], 16)
	binary.BigEndian.PutUint64(param[8:], 10)
	binary.BigEndian.PutUint32(param[16:], 1)
	if r := d.Execute([]byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, param); r.Status != StatusGood {
		t.Fatalf("UNMAP: status %#x sense % x", r.Status, r.Sense)
	}
	r = d.Execute(cdb16(0x88, 10, 2, 0), nil)
	if !bytes.Equal(r.Data[:BlockSize], make([]byte, BlockSize)) || !bytes.Equal(r.Data[BlockSize:], data[BlockSize:]) {
		t.Errorf("after UNMAP of block 10: block 10 not zero or block 11 changed")
	}
}

func TestInquiryAndCapacity(t *testing.T) {
	d, _ := newDev()
	r := d.Execute([]byte{0x12, 1, 0x00, 0, 255, 0}, nil)
	if !bytes.Equal(r.Data[4:], vpdPages) {
		t.Errorf("VPD 0x00 = % x, want % x", r.Data[4:], vpdPages)
	}
	r = d.Execute([]byte{0x12, 1, 0xb2, 0, 255, 0}, nil)
	if r.Data[5]&0x80 == 0 {
		t.Errorf("VPD 0xB2 LBPU clear: % x", r.Data)
	}
	r = d.Execute(cdb16(0x9e, 0, 32, 0x10), nil)
	if got := binary.BigEndian.Uint64(r.Data); got != 63 || r.Data[14]&0x80 == 0 {
		t.Errorf("READ CAPACITY 16: last LBA %d LBPME %v, want 63 true", got, r.Data[14]&0x80 != 0)
	}
	r = d.Execute([]byte{0x5a, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0}, nil)
	if r.Data[3]&0x10 == 0 || r.Data[8] != pageCaching || r.Data[10]&0x04 == 0 {
		t.Errorf("MODE SENSE 10 caching: DPOFUA or WCE clear: % x", r.Data)
	}
}

func TestReadOnly(t *testing.T) {
	d, _ := newDev()
	d.ReadOnly = true
	r := d.Execute(cdb16(0x8a, 0, 1, 0), make([]byte, BlockSize))
	if key, asc := senseOf(r); key != senseDataProtect || asc != ascWriteProtected {
		t.Errorf("WRITE16 on read-only unit = sense %#x/%#04x, want DATA PROTECT/WRITE PROTECTED", key, asc)
	}
	r = d.Execute([]byte{0x1a, 0x08, 0x3f, 0, 255, 0}, nil)
	if r.Data[2]&0x80 == 0 {
		t.Errorf("MODE SENSE 6 on read-only unit: WP clear")
	}
}

func TestReportSupportedOpcodes(t *testing.T) {
	d, _ := newDev()
	rsoc := func(opts, op byte, sa uint16) Result {
		c := make([]byte, 12)
		c[0], c[1], c[2], c[3] = 0xa3, 0x0c, opts, op
		binary.BigEndian.PutUint16(c[4:], sa)
		binary.BigEndian.PutUint32(c[6:], 4096)
		return d.Execute(c, nil)
	}
	all := rsoc(0, 0, 0)
	if n := binary.BigEndian.Uint32(all.Data); int(n) != 8*len(supportedOps) {
		t.Errorf("all commands: length %d, want %d", n, 8*len(supportedOps))
	}
	tests := []struct {
		name    string
		opts    byte
		op      byte
		sa      uint16
		support byte // 0 means CHECK CONDITION expected
	}{
		{"read10_supported", 1, 0x28, 0, 3},
		{"unknown_not_supported", 1, 0xd0, 0, 1},
		{"opts1_on_service_action_opcode", 1, 0x9e, 0, 0},
		{"read_capacity16_by_service_action", 2, 0x9e, 0x10, 3},
		{"opts2_on_plain_opcode", 2, 0x28, 0, 0},
		{"unknown_service_action", 2, 0x9e, 0x13, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rsoc(tt.opts, tt.op, tt.sa)
			if tt.support == 0 {
				if key, asc := senseOf(r); key != senseIllegalRequest || asc != ascInvalidFieldInCDB {
					t.Errorf("status %#x sense %#x/%#04x, want INVALID FIELD IN CDB", r.Status, key, asc)
				}
				return
			}
			if r.Status != StatusGood || r.Data[1]&7 != tt.support {
				t.Errorf("status %#x support %d, want %d", r.Status, r.Data[1]&7, tt.support)
			}
		})
	}
	if r := rsoc(1, 0x28, 0); r.Data[5]&0x18 != 0x18 {
		t.Errorf("READ 10 usage data byte 1 = %#x, want DPO and FUA", r.Data[5])
	}
}

func TestSupportedOpsMatchHandlers(t *testing.T) {
	listed := map[byte]bool{}
	for _, o := range supportedOps {
		listed[o.op] = true
		if _, ok := handlers[o.op]; !ok {
			t.Errorf("REPORT SUPPORTED OPERATION CODES lists %#02x, which has no handler", o.op)
		}
		if len(o.usage) != cdbLength(o.op) || o.usage[0] != 0xff {
			t.Errorf("opcode %#02x: usage data of %d bytes, want %d starting 0xff", o.op, len(o.usage), cdbLength(o.op))
		}
	}
	for op := range handlers {
		if !listed[op] {
			t.Errorf("handler for %#02x not listed in REPORT SUPPORTED OPERATION CODES", op)
		}
	}
}
