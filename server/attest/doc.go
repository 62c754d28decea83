// Package attest is sealroot's attestation service: a QUIC server (TLS 1.3,
// ALPN "sealroot/1") that establishes a machine's TPM identity, verifies its
// boot state and releases a credential sealed to that TPM.
//
// # Conversation
//
// One attestation is one stream (see package wire):
//
//  1. Hello: the EK and AK public areas, an optional EK certificate, hints.
//     The machine ID is the SHA-256 of the EK public area. A present EK
//     certificate must chain to the configured manufacturer CAs. A revoked
//     machine is refused here.
//  2. Challenge: a credential-activation challenge for the AK and a fresh
//     nonce, both bound to this connection.
//  3. Evidence is checked in a fixed order, each failure naming its check:
//     activation proof, quote signature, quote type and extra data
//     (H(label, nonce, TLS exporter, machine ID)), PCR digest, reset count,
//     event-log replay with full coverage, then policy.
//  4. Unknown and pending machines are recorded as pending with the boot
//     state they reported; an approved machine whose boot state changed is
//     marked needs-reapproval with an event diff; an approved machine whose
//     state matches receives a Credential: a fresh key sealed to its EK
//     under PolicyPCR over the verified PCRs (PCR 15 = 0), and the payload
//     encrypted under that key.
//
// Every decision is written to the audit log. No secret value is logged.
//
// # Decisions against the current record
//
// The machine record read at hello is only a starting point. Every state
// change and every release is committed with store.Store.UpdateMachine in
// one transaction that first checks the record's Version is still the one
// read at hello; when it is not, the exchange is refused (check "revoked",
// "forgotten" or "stale-record") and nothing is stored. A release is then
// audited, and only then is the credential sent; when the audit record
// cannot be written the agent is refused (check "audit") and retries.
// Server.EndRevoked and Server.EndForgotten end a machine's exchanges in
// progress at once; package machines calls them after revoke and forget.
package attest
