// Package scsi emulates a SCSI direct-access block device (SPC-4, SBC-3)
// over a [BackingStore]: the commands the Linux sd driver and libiscsi's
// conformance suite issue. Logical blocks are 512 bytes.
//
// # Concurrency
//
// Execute may be called from many goroutines if the BackingStore allows
// concurrent ReadAt and WriteAt. COMPARE AND WRITE is atomic with
// respect to other COMPARE AND WRITE commands only.
package scsi

import (
	"encoding/binary"
	"io"
	"sync"
)

// BlockSize is the logical block length in bytes.
const BlockSize = 512

// MaxTransferBlocks is the largest READ or WRITE the device accepts,
// advertised in the Block Limits VPD page (8 MiB).
const MaxTransferBlocks = 16384

// BackingStore holds the blocks of one logical unit.
type BackingStore interface {
	io.ReaderAt
	io.WriterAt
	// Size is the store's length in bytes; the device exposes
	// Size()/BlockSize blocks.
	Size() int64
	// Sync makes every completed write durable (fdatasync).
	Sync() error
	// Punch deallocates n bytes at off; they read back as zeros.
	Punch(off, n int64) error
}

// FUAWriter is implemented by stores that can write through to stable
// storage in one call (pwritev2 RWF_DSYNC). Without it a Force Unit
// Access write is WriteAt followed by Sync.
type FUAWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

// SCSI status codes (SAM-5).
const (
	StatusGood           = 0x00
	StatusCheckCondition = 0x02
)

// Device is one logical unit. The zero value is not usable: Store is
// required.
type Device struct {
	Store BackingStore
	// Serial is the unit serial number (VPD page 0x80) and seeds the
	// NAA identifier (VPD page 0x83). Keep it stable across restarts.
	Serial string
	// ReadOnly refuses writes with DATA PROTECT.
	ReadOnly bool

	cawMu sync.Mutex // serializes COMPARE AND WRITE
}

// Result is the outcome of one command.
type Result struct {
	Status byte
	Sense  []byte // fixed-format sense data when Status is CHECK CONDITION
	Data   []byte // Data-In, possibly longer or shorter than the initiator expects
}

// Execute runs one command. out holds the Data-Out the initiator sent.
func (d *Device) Execute(cdb []byte, out []byte) Result {
	if len(cdb) < 6 {
		return checkCondition(senseIllegalRequest, ascInvalidOpcode)
	}
	h, ok := handlers[cdb[0]]
	if !ok || len(cdb) < cdbLength(cdb[0]) {
		return checkCondition(senseIllegalRequest, ascInvalidOpcode)
	}
	return h(d, cdb, out)
}

type handler func(d *Device, cdb, out []byte) Result

var handlers map[byte]handler

func init() {
	handlers = map[byte]handler{
		0x00: func(*Device, []byte, []byte) Result { return good(nil) }, // TEST UNIT READY
		0x03: requestSense,
		0x12: inquiry,
		0x1a: modeSense6,
		0x5a: modeSense10,
		0x1b: func(*Device, []byte, []byte) Result { return good(nil) }, // START STOP UNIT
		0x1e: func(*Device, []byte, []byte) Result { return good(nil) }, // PREVENT ALLOW MEDIUM REMOVAL
		0xa0: reportLUNs,
		0x25: readCapacity10,
		0x9e: serviceActionIn16,
		0x08: readCmd, 0x28: readCmd, 0xa8: readCmd, 0x88: readCmd,
		0x0a: writeCmd, 0x2a: writeCmd, 0xaa: writeCmd, 0x8a: writeCmd,
		0x2e: writeCmd, 0xae: writeCmd, 0x8e: writeCmd, // WRITE AND VERIFY 10/12/16
		0x2f: verifyCmd, 0xaf: verifyCmd, 0x8f: verifyCmd,
		0x34: prefetch, 0x90: prefetch,
		0x35: syncCache, 0x91: syncCache,
		0x42: unmap,
		0x41: writeSame, 0x93: writeSame,
		0x89: compareAndWrite,
		0xa3: maintenanceIn,
	}
}

// cdbLength is the CDB size the operation code's group implies.
func cdbLength(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 16
}

func good(data []byte) Result { return Result{Status: StatusGood, Data: data} }

// allocate truncates data to the CDB's allocation length.
func allocate(data []byte, alloc int) Result {
	if len(data) > alloc {
		data = data[:alloc]
	}
	return good(data)
}

func (d *Device) blocks() uint64 { return uint64(d.Store.Size()) / BlockSize }

func be16(b []byte) int    { return int(binary.BigEndian.Uint16(b)) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
