package eventlog

// Event is one verified event-log entry, as Verify returns it. The store
// keeps a machine's events in its boot states (store.BootState) for
// readable diffs, in this JSON shape.
type Event struct {
	PCR         int    `json:"pcr"`
	Sequence    int    `json:"seq"` // position in the log
	Type        uint32 `json:"type"`
	TypeName    string `json:"type_name"`
	Digest      []byte `json:"digest"`                // sha256
	Description string `json:"description,omitempty"` // short and printable
}
