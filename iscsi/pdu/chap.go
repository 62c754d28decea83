package pdu

// CHAP holds the credentials of a CHAP login (RFC 1994 with the iSCSI rules
// of RFC 7143 section 12.1.3; MD5, CHAP_A=5, only). The target and the
// agent's initiator use the same type. Secrets are never logged.
type CHAP struct {
	// User and Secret authenticate the initiator to the target.
	User, Secret string
	// TargetUser and TargetSecret, when TargetSecret is set, make the
	// login mutual and required so: the initiator challenges the target,
	// which must answer with them.
	TargetUser, TargetSecret string
}

// Mutual reports whether c asks for mutual CHAP (c may be nil).
func (c *CHAP) Mutual() bool { return c != nil && c.TargetSecret != "" }
