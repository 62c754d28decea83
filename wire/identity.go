package wire

import (
	"crypto/sha256"
	"encoding/hex"
)

// ReleasePCR is the PCR the agent extends right after opening its
// credential. Every credential is sealed to ReleasePCR = 0 and every quote
// must show it zero, so nothing later in the same boot can open a credential
// again; it is therefore never pinned at approval.
const ReleasePCR = 15

// MachineID returns a machine's identity: the hex SHA-256 of its EK's
// TPMT_PUBLIC bytes. Agent and server derive it the same way; it is never
// derived from a MAC, IP or other hint.
func MachineID(ekPublic []byte) string {
	sum := sha256.Sum256(ekPublic)
	return hex.EncodeToString(sum[:])
}
