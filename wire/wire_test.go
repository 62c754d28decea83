package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleMessages() []Message {
	digest := bytes.Repeat([]byte{0xab}, 32)
	return []Message{
		&Hello{EKPublic: []byte{1, 2, 3}, AKPublic: []byte{4, 5}, EKCert: []byte{6}, EKChain: [][]byte{{7}, {8, 9}},
			Hints: Hints{MACs: []string{"52:54:00:12:34:56"}, SMBIOSUUID: "uuid", Firmware: "uefi"}},
		&Challenge{MachineID: "ab", CredentialBlob: []byte{1}, EncryptedSecret: []byte{2},
			Nonce: bytes.Repeat([]byte{7}, NonceSize), PCRs: []int{0, 1, 2, 15}},
		&Evidence{ActivationProof: digest, Quote: []byte{1}, Signature: []byte{2},
			PCRs: []PCR{{Index: 0, Digest: digest}, {Index: 15, Digest: make([]byte, 32)}}, EventLog: []byte("log")},
		&Credential{Public: []byte{1}, Duplicate: []byte{2}, InSymSeed: []byte{3}, PCRs: []int{0, 15}, Ciphertext: []byte{4}},
		&Status{State: StatePending, MachineID: "ab", Fingerprint: "ab", RetryAfterMillis: 1000},
		&Ack{OK: true},
		&Error{Code: "protocol", Message: "bad"},
		&LoginPrompt{Reason: "wrong user name or password", RetryAfterMillis: 2000},
		&Login{User: "alice", Password: []byte("correct horse")},
		sampleMenu(),
		&Menu{Entries: sampleMenu().Entries[:2], Default: ImageEntryID("debian"), NoLocalDisk: true},
		&Choice{ID: ImageEntryID("debian")},
		&Status{State: StateLocalDisk, MachineID: "ab"},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.Type().String(), func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, m); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got, err := Read(&buf)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("Read = %+v, want %+v", got, m)
			}
		})
	}
}

func frame(version byte, typ Type, body []byte) []byte {
	b := []byte{version, byte(typ), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[2:], uint32(len(body)))
	return append(b, body...)
}

func TestReadRejects(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		words string
	}{
		{"unknown_version", frame(2, TypeAck, []byte(`{"ok":true}`)), "unsupported protocol version 2"},
		{"unknown_type", frame(Version, 99, []byte(`{}`)), "unknown message type 99"},
		{"oversized_length", frame(Version, TypeAck, bytes.Repeat([]byte{' '}, 300)), "over the limit"},
		{"oversized_evidence_header_only", []byte{Version, byte(TypeEvidence), 0xff, 0xff, 0xff, 0xff}, "over the limit"},
		{"truncated_header", []byte{Version, byte(TypeAck)}, "truncated frame header"},
		{"truncated_body", frame(Version, TypeAck, []byte(`{"ok":true}`))[:10], "truncated ack body"},
		{"not_json", frame(Version, TypeAck, []byte(`nope`)), "malformed ack"},
		{"unknown_field", frame(Version, TypeAck, []byte(`{"ok":true,"evil":1}`)), "unknown field"},
		{"trailing_data", frame(Version, TypeAck, []byte(`{"ok":true}{}`)), "trailing data"},
		{"short_nonce", frame(Version, TypeChallenge, []byte(`{"machine_id":"a","credential_blob":"AQ==","encrypted_secret":"AQ==","nonce":"AQ==","pcrs":[0]}`)), "nonce of 1 bytes"},
		{"pcr_out_of_range", frame(Version, TypeCredential, []byte(`{"public":"AQ==","duplicate":"AQ==","in_sym_seed":"AQ==","ciphertext":"AQ==","pcrs":[24]}`)), "out of range"},
		{"pcr_twice", frame(Version, TypeCredential, []byte(`{"public":"AQ==","duplicate":"AQ==","in_sym_seed":"AQ==","ciphertext":"AQ==","pcrs":[1,1]}`)), "listed twice"},
		{"empty_hello", frame(Version, TypeHello, []byte(`{}`)), "ek_public of 0 bytes"},
		{"empty_chain_entry", frame(Version, TypeHello, []byte(`{"ek_public":"AQ==","ak_public":"AQ==","ek_chain":[""],"hints":{}}`)), "empty ek_chain entry"},
		{"chain_too_long", frame(Version, TypeHello, []byte(`{"ek_public":"AQ==","ak_public":"AQ==","ek_chain":["AQ==","AQ==","AQ==","AQ==","AQ==","AQ==","AQ==","AQ==","AQ=="],"hints":{}}`)), "ek_chain of 9 entries"},
		{"bad_wireguard_key", frame(Version, TypeHello, []byte(`{"ek_public":"AQ==","ak_public":"AQ==","wireguard_key":"AQ==","hints":{}}`)), "wireguard_key of 1 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tt.in))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Read = %v, want ErrProtocol", err)
			}
			if !strings.Contains(err.Error(), tt.words) {
				t.Errorf("Read error = %q, want it to contain %q", err, tt.words)
			}
		})
	}
}

func TestMarshalRefusesOversized(t *testing.T) {
	_, err := Marshal(&Evidence{EventLog: make([]byte, 2<<20)})
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("Marshal(2 MiB evidence) = %v, want ErrProtocol", err)
	}
}

func TestReadExpect(t *testing.T) {
	b, _ := Marshal(&Error{Code: "revoked", Message: "gone"})
	_, err := ReadExpect[*Challenge](bytes.NewReader(b))
	var e *Error
	if !errors.As(err, &e) || e.Code != "revoked" {
		t.Fatalf("ReadExpect(error frame) = %v, want *Error revoked", err)
	}
	b, _ = Marshal(&Ack{OK: true})
	if _, err := ReadExpect[*Challenge](bytes.NewReader(b)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("ReadExpect(ack as challenge) = %v, want ErrProtocol", err)
	}
}

func TestBindingHashesDiffer(t *testing.T) {
	n, x := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	q := QualifyingData(n, x, "m")
	if bytes.Equal(q, ActivationProofData(n, x, "m")) {
		t.Error("quote and activation data collide")
	}
	if bytes.Equal(q, QualifyingData(n, bytes.Repeat([]byte{3}, 32), "m")) {
		t.Error("qualifying data ignores the exporter")
	}
	// Length prefixes keep part boundaries apart.
	if bytes.Equal(labeledHash("l", []byte("ab"), []byte("c")), labeledHash("l", []byte("a"), []byte("bc"))) {
		t.Error("labeledHash is ambiguous across part boundaries")
	}
}

// TestReadAllocatesWhatArrives checks that a header declaring a large
// evidence frame, followed by a few bytes, costs the reader about what
// arrived, not the declared size.
func TestReadAllocatesWhatArrives(t *testing.T) {
	hdr := []byte{Version, byte(TypeEvidence), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hdr[2:6], uint32(MaxSize(TypeEvidence)))
	frame := append(hdr, 1, 2, 3)
	allocs := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := Read(bytes.NewReader(frame)); !errors.Is(err, ErrProtocol) {
				b.Fatalf("Read = %v, want a truncation error", err)
			}
		}
	}).AllocedBytesPerOp()
	if allocs > 64<<10 {
		t.Fatalf("a 9-byte frame declaring %d bytes allocated %d bytes", MaxSize(TypeEvidence), allocs)
	}
}

// TestLargestHelloFits: a Hello with the largest certificate, chain, public
// areas and hints the agent can send fits its frame limit.
func TestLargestHelloFits(t *testing.T) {
	hint := strings.Repeat("h", maxHintLen)
	h := &Hello{
		EKPublic: bytes.Repeat([]byte{1}, maxPublicArea),
		AKPublic: bytes.Repeat([]byte{2}, maxPublicArea),
		EKCert:   bytes.Repeat([]byte{3}, maxCert),
		Hints:    Hints{SMBIOSUUID: hint, Hostname: hint, Firmware: hint, AgentVer: hint},
	}
	for range maxChainIndices {
		h.EKChain = append(h.EKChain, bytes.Repeat([]byte{4}, maxChain/maxChainIndices))
	}
	for range maxHints {
		h.Hints.MACs = append(h.Hints.MACs, hint)
	}
	var buf bytes.Buffer
	if err := Write(&buf, h); err != nil {
		t.Fatalf("Write(largest Hello) = %v", err)
	}
	if _, err := Read(&buf); err != nil {
		t.Fatalf("Read(largest Hello) = %v", err)
	}
}

// TestLabeledHashEncoding pins labeledHash to its definition: SHA-256 over
// each of label and parts with a 4-byte big-endian length prefix, for parts
// that fit its stack buffer and parts that do not. Agents and servers of
// different versions must agree on these bytes.
func TestLabeledHashEncoding(t *testing.T) {
	for _, size := range []int{0, 32, 300} {
		parts := [][]byte{bytes.Repeat([]byte{1}, size), nil, []byte("machine")}
		h := sha256.New()
		for _, p := range append([][]byte{[]byte("label")}, parts...) {
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
			h.Write(p)
		}
		if got, want := labeledHash("label", parts...), h.Sum(nil); !bytes.Equal(got, want) {
			t.Errorf("labeledHash with a %d-byte part = %x, want %x", size, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { QualifyingData(make([]byte, 32), make([]byte, 32), "m") }); n > 1 {
		t.Errorf("QualifyingData allocates %v times, want at most 1", n)
	}
}
