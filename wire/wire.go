// Package wire defines sealroot's attestation protocol messages and their
// framing. It is a leaf package with standard-library dependencies only: the
// agent in the initramfs imports it, and every decoder here is fuzzed because
// its input comes from the network.
//
// # Framing
//
// Each message on the QUIC stream is a frame:
//
//	version (1 byte, = Version) | type (1 byte) | length (4 bytes, big endian) | body
//
// The body is a JSON object of the Go type registered for the frame type.
// Each type has a hard size limit (MaxSize); a frame over its limit, of an
// unknown version or type, or whose body does not decode strictly (unknown
// fields, trailing data) is a protocol error (ErrProtocol).
//
// # Conversation
//
// One attestation is one bidirectional stream on a connection negotiated
// with ALPN "sealroot/1":
//
//	agent  -> Hello
//	server <- Challenge | Status (revoked, busy) | Error
//	agent  -> Evidence
//	server <- Credential | Status (pending, needs re-approval, refused) | Error
//	          | Menu (several roots: see menu.go)
//	  agent  -> Choice
//	  server <- Credential | Status (local-disk) | Error
//	agent  -> Ack (the key was unsealed and PCR 15 extended)
package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ALPN is the TLS application protocol of the attestation service.
const ALPN = "sealroot/1"

// Version is the only framing version this package speaks.
const Version = 1

// ExporterLabel is the TLS exporter label whose 32-byte value binds a quote,
// the activation proof and the credential to one TLS session.
const ExporterLabel = "EXPORTER-sealroot-attest-v1"

// ExporterLength is the length of the TLS exporter value.
const ExporterLength = 32

// NonceSize is the size of the server's single-use nonce.
const NonceSize = 32

// Labels used as domain separators in hashes and MACs.
const (
	QuoteLabel      = "sealroot quote v1"
	ActivationLabel = "sealroot activation v1"
	CredentialLabel = "sealroot credential v1"
)

// ErrProtocol is wrapped by every framing and decoding error.
var ErrProtocol = errors.New("sealroot protocol error")

// Type identifies a frame's message type.
type Type uint8

// Message types.
const (
	TypeHello      Type = 1
	TypeChallenge  Type = 2
	TypeEvidence   Type = 3
	TypeCredential Type = 4
	TypeStatus     Type = 5
	TypeAck        Type = 6
	TypeError      Type = 7
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeChallenge:
		return "challenge"
	case TypeEvidence:
		return "evidence"
	case TypeCredential:
		return "credential"
	case TypeStatus:
		return "status"
	case TypeAck:
		return "ack"
	case TypeError:
		return "error"
	case TypeLoginPrompt:
		return "login-prompt"
	case TypeLogin:
		return "login"
	case TypeMenu:
		return "menu"
	case TypeChoice:
		return "choice"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MaxSize returns the largest body accepted for a message type, or 0 for an
// unknown type.
func MaxSize(t Type) int {
	switch t {
	case TypeHello:
		return 64 << 10 // EK and AK public areas, an EK certificate and chain (base64), hints
	case TypeChallenge:
		return 4 << 10
	case TypeEvidence:
		return 1 << 20 // dominated by the firmware event log
	case TypeCredential:
		return 2 << 20 // up to MaxFilesTotal of files, base64 in JSON, and secrets
	case TypeStatus, TypeError:
		return 64 << 10 // a readable event diff
	case TypeAck:
		return 256
	case TypeLoginPrompt:
		return 1 << 10
	case TypeLogin:
		return 2 << 10 // a password of MaxLoginPassword bytes in base64
	case TypeMenu:
		return 8 << 10 // MaxMenuEntries entries of at most ~300 bytes each
	case TypeChoice:
		return 256
	}
	return 0
}

const headerSize = 6

// Message is implemented by every message body.
type Message interface {
	Type() Type
}

// Hello is the agent's first message. TPM structures are in their TPM wire
// encoding (TPMT_PUBLIC for public areas).
type Hello struct {
	EKPublic []byte `json:"ek_public"`
	EKCert   []byte `json:"ek_cert,omitempty"` // as stored in TPM NV (normally DER), when present
	// EKChain holds the TPM's EK certificate chain NV indices
	// (0x01C00100-0x01C001FF), each one or more DER certificates.
	EKChain  [][]byte `json:"ek_chain,omitempty"`
	AKPublic []byte   `json:"ak_public"`
	Hints    Hints    `json:"hints"`
	// WireGuardKey is the agent's per-boot WireGuard public key (32 bytes),
	// when the root link is a tunnel.
	WireGuardKey []byte `json:"wireguard_key,omitempty"`
}

// Hints are unauthenticated facts about the machine, shown to operators and
// never used for identity.
type Hints struct {
	MACs       []string `json:"macs,omitempty"`
	SMBIOSUUID string   `json:"smbios_uuid,omitempty"`
	// SMBIOS system vendor, product name and serial number, as the
	// machine's label shows them (DMI sys_vendor, product_name,
	// product_serial).
	Vendor   string `json:"vendor,omitempty"`
	Product  string `json:"product,omitempty"`
	Serial   string `json:"serial,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Firmware string `json:"firmware,omitempty"` // "uefi" or "bios"
	AgentVer string `json:"agent_version,omitempty"`
}

// Challenge asks the agent to activate a credential for its AK and to quote
// the listed sha256 PCRs with the nonce.
type Challenge struct {
	MachineID       string `json:"machine_id"`       // hex SHA-256 of the EK public area
	CredentialBlob  []byte `json:"credential_blob"`  // TPM2B_ID_OBJECT contents
	EncryptedSecret []byte `json:"encrypted_secret"` // TPM2B_ENCRYPTED_SECRET contents
	Nonce           []byte `json:"nonce"`
	PCRs            []int  `json:"pcrs"`
}

// Evidence answers a Challenge.
type Evidence struct {
	// ActivationProof = HMAC-SHA256(activated secret, ActivationProofData).
	ActivationProof []byte `json:"activation_proof"`
	Quote           []byte `json:"quote"`     // TPM2B_ATTEST contents (TPMS_ATTEST)
	Signature       []byte `json:"signature"` // TPMT_SIGNATURE
	// PCRs holds the sha256 PCR values, in the order of Challenge.PCRs.
	PCRs     []PCR  `json:"pcrs"`
	EventLog []byte `json:"event_log"` // raw TCG event log, as the kernel exports it
}

// PCR is one sha256 PCR value.
type PCR struct {
	Index  int    `json:"index"`
	Digest []byte `json:"digest"`
}

// Credential is the sealed credential. The 32-byte key K is a keyed-hash
// object duplicated to the EK under a PolicyPCR; Ciphertext is the Payload
// sealed with AES-256-GCM under K (12-byte nonce prefix), with additional
// data CredentialAAD.
type Credential struct {
	Public     []byte `json:"public"`      // TPMT_PUBLIC of the keyed-hash object
	Duplicate  []byte `json:"duplicate"`   // TPM2B_PRIVATE contents
	InSymSeed  []byte `json:"in_sym_seed"` // TPM2B_ENCRYPTED_SECRET contents
	PCRs       []int  `json:"pcrs"`        // the PolicyPCR selection, sha256 bank
	Ciphertext []byte `json:"ciphertext"`
}

// Payload is what the credential carries, decrypted only inside the agent.
type Payload struct {
	MachineID   string            `json:"machine_id"`
	MachineName string            `json:"machine_name"`
	Root        RootPlan          `json:"root"`
	Secrets     map[string][]byte `json:"secrets,omitempty"`
	Tunnel      *TunnelPlan       `json:"tunnel,omitempty"`
	// Files are written into the root before switch_root (see File).
	Files []File `json:"files,omitempty"`
}

// RootPlan tells the agent which root to mount.
type RootPlan struct {
	// Kind is "none" (attest only), "iscsi", "nfs" or "volatile".
	Kind string `json:"kind"`
	// Init is the program to switch_root to; default /sbin/init.
	Init string `json:"init,omitempty"`
	// Params are kind-specific settings (portal, target, export, ...).
	// Secrets never go here: they go in Payload.Secrets.
	Params map[string]string `json:"params,omitempty"`
}

// TunnelPlan configures the agent's WireGuard link to its root.
type TunnelPlan struct {
	ServerKey  []byte `json:"server_key"`
	Endpoint   string `json:"endpoint"`
	Address    string `json:"address"`     // the machine's tunnel address, CIDR
	ServerAddr string `json:"server_addr"` // the server's tunnel address
}

// Status reports a non-credential outcome.
type Status struct {
	State       State  `json:"state"`
	MachineID   string `json:"machine_id,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"` // what an operator types to approve
	Reason      string `json:"reason,omitempty"`
	Diff        string `json:"diff,omitempty"` // readable event diff, needs re-approval
	// RetryAfterMillis is the server's suggested minimum delay before retrying.
	RetryAfterMillis int64 `json:"retry_after_ms,omitempty"`
}

// State is a machine's enrollment state as seen by the agent.
type State string

// States reported to the agent.
const (
	StatePending         State = "pending"
	StateNeedsReapproval State = "needs-reapproval"
	StateRevoked         State = "revoked"
	StateRefused         State = "refused" // evidence failed a check
	// StateBusy: the server is at its pace; come back after
	// RetryAfterMillis (the time it booked for this agent).
	StateBusy State = "busy"
	// StateLocalDisk answers a Choice of the local disk: the agent sets
	// the firmware's BootNext and reboots.
	StateLocalDisk State = "local-disk"
)

// Ack tells the server the credential was opened and PCR 15 extended.
type Ack struct {
	OK bool `json:"ok"`
}

// Error is a protocol-level error sent before closing the stream.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (*Hello) Type() Type      { return TypeHello }
func (*Challenge) Type() Type  { return TypeChallenge }
func (*Evidence) Type() Type   { return TypeEvidence }
func (*Credential) Type() Type { return TypeCredential }
func (*Status) Type() Type     { return TypeStatus }
func (*Ack) Type() Type        { return TypeAck }
func (*Error) Type() Type      { return TypeError }

func (e *Error) Error() string { return fmt.Sprintf("server error %s: %s", e.Code, e.Message) }

func newMessage(t Type) Message {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeChallenge:
		return new(Challenge)
	case TypeEvidence:
		return new(Evidence)
	case TypeCredential:
		return new(Credential)
	case TypeStatus:
		return new(Status)
	case TypeAck:
		return new(Ack)
	case TypeError:
		return new(Error)
	case TypeLoginPrompt:
		return new(LoginPrompt)
	case TypeLogin:
		return new(Login)
	case TypeMenu:
		return new(Menu)
	case TypeChoice:
		return new(Choice)
	}
	return nil
}

// Marshal encodes m as one frame.
func Marshal(m Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %v: %w", m.Type(), err)
	}
	if len(body) > MaxSize(m.Type()) {
		return nil, fmt.Errorf("encode %v: %d bytes over the limit of %d: %w", m.Type(), len(body), MaxSize(m.Type()), ErrProtocol)
	}
	frame := make([]byte, headerSize+len(body))
	frame[0] = Version
	frame[1] = byte(m.Type())
	binary.BigEndian.PutUint32(frame[2:6], uint32(len(body)))
	copy(frame[headerSize:], body)
	return frame, nil
}

// Write writes m as one frame to w.
func Write(w io.Writer, m Message) error {
	frame, err := Marshal(m)
	if err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("write %v: %w", m.Type(), err)
	}
	return nil
}

// Read reads one frame from r and decodes its body. It never reads more than
// the header plus the type's size limit.
func Read(r io.Reader) (Message, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated frame header: %w", ErrProtocol)
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	if hdr[0] != Version {
		return nil, fmt.Errorf("unsupported protocol version %d (want %d): %w", hdr[0], Version, ErrProtocol)
	}
	t := Type(hdr[1])
	limit := MaxSize(t)
	if limit == 0 {
		return nil, fmt.Errorf("unknown message type %d: %w", hdr[1], ErrProtocol)
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%v of %d bytes is over the limit of %d: %w", t, n, limit, ErrProtocol)
	}
	// The buffer grows with the bytes that arrive, not with the length the
	// peer declares: a frame header alone cannot make the server allocate.
	body, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("read %v body: %w", t, err)
	}
	if len(body) != int(n) {
		return nil, fmt.Errorf("truncated %v body: %w", t, ErrProtocol)
	}
	return decodeBody(t, body)
}

// Unmarshal decodes one complete frame held in b.
func Unmarshal(b []byte) (Message, error) {
	m, err := Read(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if n := len(b) - headerSize - int(binary.BigEndian.Uint32(b[2:6])); n != 0 {
		return nil, fmt.Errorf("%d bytes after the frame: %w", n, ErrProtocol)
	}
	return m, nil
}

func decodeBody(t Type, body []byte) (Message, error) {
	m := newMessage(t)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("malformed %v: %v: %w", t, err, ErrProtocol)
	}
	if dec.More() {
		return nil, fmt.Errorf("malformed %v: trailing data: %w", t, ErrProtocol)
	}
	if v, ok := m.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return nil, fmt.Errorf("invalid %v: %v: %w", t, err, ErrProtocol)
		}
	}
	return m, nil
}

// ReadExpect reads one frame and returns it as T. An Error frame is returned
// as a *Error error; any other type is a protocol error.
func ReadExpect[T Message](r io.Reader) (T, error) {
	var zero T
	m, err := Read(r)
	if err != nil {
		return zero, err
	}
	if e, ok := m.(*Error); ok {
		return zero, e
	}
	v, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("unexpected %v, want %v: %w", m.Type(), zero.Type(), ErrProtocol)
	}
	return v, nil
}

// QualifyingData is the quote's extra data:
// SHA-256(QuoteLabel ‖ nonce ‖ exporter ‖ machineID).
func QualifyingData(nonce, exporter []byte, machineID string) []byte {
	return labeledHash(QuoteLabel, nonce, exporter, []byte(machineID))
}

// ActivationProofData is the message MACed with the activated secret:
// SHA-256(ActivationLabel ‖ nonce ‖ exporter ‖ machineID).
func ActivationProofData(nonce, exporter []byte, machineID string) []byte {
	return labeledHash(ActivationLabel, nonce, exporter, []byte(machineID))
}

// CredentialAAD is the additional data of the payload's AEAD:
// SHA-256(CredentialLabel ‖ exporter ‖ machineID).
func CredentialAAD(exporter []byte, machineID string) []byte {
	return labeledHash(CredentialLabel, exporter, []byte(machineID))
}

// labeledHash hashes the label and each part with a length prefix, so no two
// different part lists collide.
//
// The encoding is built in one buffer (on the stack for the usual sizes)
// and hashed with one call: these run several times per attestation.
func labeledHash(label string, parts ...[]byte) []byte {
	size := 4 + len(label)
	for _, p := range parts {
		size += 4 + len(p)
	}
	var stack [256]byte
	buf := stack[:0]
	if size > len(stack) {
		buf = make([]byte, 0, size)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(label)))
	buf = append(buf, label...)
	for _, p := range parts {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(p)))
		buf = append(buf, p...)
	}
	sum := sha256.Sum256(buf)
	return sum[:]
}
