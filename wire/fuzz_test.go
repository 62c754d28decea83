package wire

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the frame decoder: it must never panic,
// every failure must be a protocol error or an I/O error, and every decoded
// message must re-encode to a frame that decodes to the same message.
func FuzzRead(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{Version, byte(TypeEvidence), 0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Read(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrProtocol) && len(in) >= headerSize {
				t.Fatalf("Read error %v is not a protocol error", err)
			}
			return
		}
		b, err := Marshal(m)
		if err != nil {
			t.Fatalf("re-Marshal of decoded %v: %v", m.Type(), err)
		}
		m2, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal of re-encoded %v: %v", m.Type(), err)
		}
		b2, err := Marshal(m2)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed %v: %q != %q (%v)", m.Type(), b, b2, err)
		}
	})
}
