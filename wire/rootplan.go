package wire

// Root plan kinds and their parameters. The agent and the server's root
// providers agree on these names; secrets never go in Params.
const (
	RootNone     = "none"
	RootISCSI    = "iscsi"
	RootNFS      = "nfs"
	RootVolatile = "volatile"
)

// Parameters of an iSCSI root (RootPlan.Params).
const (
	ISCSIPortal    = "portal"    // ip:port of the target (the server's tunnel address when tunnelled)
	ISCSITarget    = "target"    // target IQN
	ISCSIInitiator = "initiator" // initiator IQN the target admits
	ISCSILUN       = "lun"       // LUN number, decimal; default 0
	ISCSIFSType    = "fstype"    // file system on the LUN; default ext4
)

// Payload.Secrets names of an iSCSI root's per-boot CHAP credentials:
// fresh random values (at least 128 bits) generated for every release,
// delivered only inside the sealed credential.
const (
	SecretCHAPUser         = "iscsi.chap_user"          // initiator's CHAP name
	SecretCHAPSecret       = "iscsi.chap_secret"        // initiator's CHAP secret
	SecretCHAPTargetUser   = "iscsi.chap_target_user"   // mutual CHAP: target's name
	SecretCHAPTargetSecret = "iscsi.chap_target_secret" // mutual CHAP: target's secret
)

// ImageParam names the base image of a stored root plan (kinds iscsi, nfs
// and volatile): the operator sets it, the server's root provider reads it.
const ImageParam = "image"

// PerUserParam, set to "true" on a stored iscsi or nfs root plan, makes the root
// per user: after attestation the agent asks for a login, and the user's
// own copy-on-write root over the image is served, whichever machine the
// user logs in on (one machine at a time).
const PerUserParam = "per_user"

// Root transports (RootPlan.Params[TransportParam] overrides the server's
// setting for one machine).
const (
	TransportParam     = "transport"
	TransportWireGuard = "wireguard" // root over the machine's WireGuard tunnel
	TransportPlain     = "plain"     // root over the plain LAN (trusted labs only)
)

// Parameters of an NFSv4 root (kinds "nfs" and "volatile"). The agent
// mounts NFSPath from NFSServer with mount(2); a volatile root mounts it
// read-only under a tmpfs overlay.
const (
	NFSServer   = "server" // the server's address: its tunnel address
	NFSPort     = "port"   // the server's NFS port; default 2049
	NFSPath     = "path"   // the export's path in the server's pseudo root
	NFSVersion  = "vers"   // NFS version; "4.2"
	VolatileVia = "via"    // volatile roots: how the shared base is reached; ViaNFS or ViaISCSI
)

// Values of VolatileVia.
const (
	ViaNFS   = "nfs"   // the base over NFS (default)
	ViaISCSI = "iscsi" // the base over iSCSI, read-only
)
