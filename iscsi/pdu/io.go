package pdu

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
)

// HardMaxDataSegment caps any data segment Read accepts, whatever the
// negotiated limit: 2^24-1 is the largest the 3-byte field encodes.
const HardMaxDataSegment = 1<<24 - 1

// maxAHS is the largest additional header: 255 words.
const maxAHS = 255 * 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Limits are the per-connection parameters Read and Write obey.
// The zero value accepts 8192-byte data segments without digests.
type Limits struct {
	// MaxDataSegmentLength is the largest data segment accepted;
	// zero means 8192 (the RFC 7143 default), values above
	// HardMaxDataSegment are lowered to it.
	MaxDataSegmentLength int
	HeaderDigest         bool // CRC32C after the header
	DataDigest           bool // CRC32C after the padded data
}

func (l Limits) maxData() int {
	switch {
	case l.MaxDataSegmentLength <= 0:
		return 8192
	case l.MaxDataSegmentLength > HardMaxDataSegment:
		return HardMaxDataSegment
	}
	return l.MaxDataSegmentLength
}

// Read reads one PDU from r. It allocates at most the header, 1020 bytes
// of AHS and l.MaxDataSegmentLength bytes of data.
func Read(r io.Reader, l Limits) (*PDU, error) {
	p := new(PDU)
	if _, err := io.ReadFull(r, p.Header[:]); err != nil {
		return nil, err
	}
	ahs := p.TotalAHSLength() * 4 // at most maxAHS by construction
	if ahs > 0 {
		p.AHS = make([]byte, ahs)
		if _, err := io.ReadFull(r, p.AHS); err != nil {
			return nil, fmt.Errorf("pdu: read AHS: %w", unexpected(err))
		}
	}
	if l.HeaderDigest {
		if err := checkDigest(r, crc32c(p.Header[:], p.AHS), ErrHeaderDigest); err != nil {
			return nil, err
		}
	}
	n := p.DataSegmentLength()
	if n > l.maxData() {
		return nil, fmt.Errorf("%w: %s with %d bytes, limit %d", ErrDataTooLong, p.Opcode(), n, l.maxData())
	}
	if n == 0 {
		return p, nil
	}
	buf := make([]byte, n+pad(n))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("pdu: read data: %w", unexpected(err))
	}
	p.Data = buf[:n]
	if l.DataDigest {
		if err := checkDigest(r, crc32c(buf), ErrDataDigest); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func checkDigest(r io.Reader, want uint32, sentinel error) error {
	var d [4]byte
	if _, err := io.ReadFull(r, d[:]); err != nil {
		return fmt.Errorf("pdu: read digest: %w", unexpected(err))
	}
	if got := binary.LittleEndian.Uint32(d[:]); got != want {
		return fmt.Errorf("%w: got %#08x, want %#08x", sentinel, got, want)
	}
	return nil
}

// crc32c digests the concatenation of bufs. iSCSI sends the digest
// least significant byte first (RFC 7143 section 13.1; matches Linux).
func crc32c(bufs ...[]byte) uint32 {
	var c uint32
	for _, b := range bufs {
		c = crc32.Update(c, castagnoli, b)
	}
	return c
}

func pad(n int) int { return (4 - n&3) & 3 }

// Encode appends the wire form of p to dst: it fills TotalAHSLength and
// DataSegmentLength from p.AHS and p.Data, pads, and adds the digests l
// asks for. AHS must be a multiple of 4 and at most 1020 bytes, Data at
// most HardMaxDataSegment bytes.
func (p *PDU) Encode(dst []byte, l Limits) ([]byte, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS) > maxAHS {
		return dst, fmt.Errorf("pdu: encode: AHS length %d", len(p.AHS))
	}
	if len(p.Data) > HardMaxDataSegment {
		return dst, fmt.Errorf("%w: encode %d bytes", ErrDataTooLong, len(p.Data))
	}
	h := p.Header
	h[4] = byte(len(p.AHS) / 4)
	n := len(p.Data)
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
	start := len(dst)
	dst = append(dst, h[:]...)
	dst = append(dst, p.AHS...)
	if l.HeaderDigest {
		dst = binary.LittleEndian.AppendUint32(dst, crc32c(dst[start:]))
	}
	if n == 0 {
		return dst, nil
	}
	ds := len(dst)
	dst = append(dst, p.Data...)
	dst = append(dst, make([]byte, pad(n))...)
	if l.DataDigest {
		dst = binary.LittleEndian.AppendUint32(dst, crc32c(dst[ds:]))
	}
	return dst, nil
}

// Write writes the wire form of p to w without copying the data
// segment: header, data and trailer go out as net.Buffers (one writev
// on a net.Conn, sequential writes otherwise).
func Write(w io.Writer, p *PDU, l Limits) error {
	data := p.Data
	q := *p
	q.Data = nil
	hdr, err := q.Encode(make([]byte, 0, BHSLength+len(p.AHS)+4), l)
	if err != nil {
		return err
	}
	if len(data) > HardMaxDataSegment {
		return fmt.Errorf("%w: encode %d bytes", ErrDataTooLong, len(data))
	}
	n := len(data)
	hdr[5], hdr[6], hdr[7] = byte(n>>16), byte(n>>8), byte(n)
	if l.HeaderDigest { // the length changed: digest again
		hl := BHSLength + len(p.AHS)
		binary.LittleEndian.PutUint32(hdr[hl:], crc32c(hdr[:hl]))
	}
	if n == 0 {
		_, err = w.Write(hdr)
		return err
	}
	var trailer [7]byte
	t := trailer[:pad(n)]
	if l.DataDigest {
		t = binary.LittleEndian.AppendUint32(t, crc32c(data, t))
	}
	bufs := net.Buffers{hdr, data, t}
	_, err = bufs.WriteTo(w)
	return err
}
