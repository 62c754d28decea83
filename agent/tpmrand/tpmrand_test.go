package tpmrand

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// response builds a TPM2_GetRandom response with rc and random bytes.
func response(rc uint32, random []byte) []byte {
	size := headerSize + 2 + len(random)
	b := []byte{0x80, 0x01, byte(size >> 24), byte(size >> 16), byte(size >> 8), byte(size),
		byte(rc >> 24), byte(rc >> 16), byte(rc >> 8), byte(rc), byte(len(random) >> 8), byte(len(random))}
	return append(b, random...)
}

func TestGetRandomCommand(t *testing.T) {
	want := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 64}
	if got := getRandomCommand(64); !bytes.Equal(got, want) {
		t.Errorf("getRandomCommand(64) = % x, want % x", got, want)
	}
}

func TestParseGetRandom(t *testing.T) {
	random := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		rsp     []byte
		want    []byte
		wantErr error
	}{
		{"ok", response(0, random), random, nil},
		{"empty_header", nil, nil, ErrShortResponse},
		{"truncated_bytes", response(0, random)[:30], nil, ErrShortResponse},
		{"size_lies", append(response(0, random)[:2], 0, 0, 0xff, 0xff), nil, ErrShortResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGetRandom(tt.rsp)
			if !errors.Is(err, tt.wantErr) || !bytes.Equal(got, tt.want) {
				t.Errorf("parseGetRandom() = %x, %v; want %x, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := parseGetRandom(response(0x101, nil)); err == nil {
		t.Error("parseGetRandom(TPM_RC_FAILURE) = nil error")
	}
}

func FuzzParseGetRandom(f *testing.F) {
	f.Add(response(0, []byte("0123456789")))
	f.Add(response(0x101, nil))
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 12})
	f.Fuzz(func(t *testing.T, rsp []byte) {
		b, err := parseGetRandom(rsp)
		if err == nil && len(b) > len(rsp) {
			t.Fatalf("parseGetRandom returned %d bytes from %d", len(b), len(rsp))
		}
	})
}

// sender answers each command with the next of its responses.
type sender [][]byte

func (s *sender) Send([]byte) ([]byte, error) {
	r := (*s)[0]
	*s = (*s)[1:]
	return r, nil
}

func TestRandomLoopsAndStopsOnError(t *testing.T) {
	s := &sender{response(0, bytes.Repeat([]byte{1}, 64)), response(0, bytes.Repeat([]byte{2}, 64))}
	got, err := Random(context.Background(), s, 100)
	if err != nil || len(got) != 100 || got[99] != 2 {
		t.Fatalf("Random(100) = %d bytes, %v; want 100 bytes from two responses", len(got), err)
	}
	s = &sender{response(0, nil)}
	if _, err := Random(context.Background(), s, 1); err == nil {
		t.Error("Random() with an empty TPM answer = nil error")
	}
}
