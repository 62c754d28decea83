// Package tpmrand reads random bytes from a TPM 2.0 with TPM2_GetRandom,
// encoded by hand. The first stage (cmd/sealroot-init) seeds the kernel's
// CRNG with it without linking go-tpm and the crypto packages go-tpm pulls
// in: /init is 1.8 MB instead of 2.8 MB in every initramfs.
package tpmrand

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// TPM 2.0 Library, Part 2 (Structures) sections 6.5 and 6.9, and Part 3
// (Commands) section 16.1, TPM2_GetRandom.
const (
	tagNoSessions = 0x8001     // TPM_ST_NO_SESSIONS
	ccGetRandom   = 0x0000017B // TPM_CC_GetRandom
	headerSize    = 10         // tag, commandSize/responseSize, commandCode/responseCode
	maxPerCommand = 64         // the largest digest; TPMs return at most this much
)

// ErrShortResponse reports a TPM response too short for what it claims.
var ErrShortResponse = errors.New("tpmrand: short TPM2_GetRandom response")

// Sender sends one TPM command and returns the response; go-tpm's
// transport.TPM satisfies it.
type Sender interface {
	Send(command []byte) ([]byte, error)
}

// Device is a TPM character device such as /dev/tpmrm0: one write of a
// command, one read of its response.
type Device struct{ f *os.File }

// Open opens the TPM character device at path.
func Open(path string) (*Device, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open TPM %s: %w", path, err)
	}
	return &Device{f}, nil
}

// Send writes command and reads the response.
func (d *Device) Send(command []byte) ([]byte, error) {
	if _, err := d.f.Write(command); err != nil {
		return nil, fmt.Errorf("write TPM command: %w", err)
	}
	buf := make([]byte, 4096) // TPM_MAX_COMMAND_SIZE of the kernel driver
	n, err := d.f.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read TPM response: %w", err)
	}
	return buf[:n], nil
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }

// Random returns n bytes from TPM2_GetRandom, asking at most 64 at a time.
func Random(ctx context.Context, tpm Sender, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("tpmrand: negative length %d", n)
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rsp, err := tpm.Send(getRandomCommand(uint16(min(n-len(out), maxPerCommand))))
		if err != nil {
			return nil, fmt.Errorf("TPM2_GetRandom: %w", err)
		}
		b, err := parseGetRandom(rsp)
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, errors.New("tpmrand: TPM2_GetRandom returned no bytes")
		}
		out = append(out, b[:min(len(b), n-len(out))]...)
	}
	return out, nil
}

// getRandomCommand encodes TPM2_GetRandom(bytesRequested).
func getRandomCommand(bytesRequested uint16) []byte {
	b := make([]byte, 0, headerSize+2)
	b = binary.BigEndian.AppendUint16(b, tagNoSessions)
	b = binary.BigEndian.AppendUint32(b, headerSize+2)
	b = binary.BigEndian.AppendUint32(b, ccGetRandom)
	return binary.BigEndian.AppendUint16(b, bytesRequested)
}

// parseGetRandom decodes a TPM2_GetRandom response: the header, then the
// TPM2B_DIGEST randomBytes. A non-zero response code is an error.
func parseGetRandom(rsp []byte) ([]byte, error) {
	if len(rsp) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrShortResponse, len(rsp))
	}
	if rc := binary.BigEndian.Uint32(rsp[6:10]); rc != 0 {
		return nil, fmt.Errorf("TPM2_GetRandom: response code %#x", rc)
	}
	size := binary.BigEndian.Uint32(rsp[2:6])
	if size < headerSize+2 || uint64(size) > uint64(len(rsp)) {
		return nil, fmt.Errorf("%w: responseSize %d, %d bytes read", ErrShortResponse, size, len(rsp))
	}
	body := rsp[headerSize:size]
	n := int(binary.BigEndian.Uint16(body))
	if len(body)-2 < n {
		return nil, fmt.Errorf("%w: %d random bytes announced, %d present", ErrShortResponse, n, len(body)-2)
	}
	return body[2 : 2+n], nil
}
