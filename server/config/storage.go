package config

// ImagesConfig is the "images" section: the base image store.
type ImagesConfig struct {
	// Dir holds the base images (absolute path).
	// Default: "<state_dir>/images".
	// Example: "/srv/sealroot/images".
	Dir string `json:"dir,omitempty"`
	// PeerListen is the ip:port where this server serves its bases to the
	// other servers sharing its store (backend etcd), which fetch a base
	// they lack by digest (`sealroot image pull`, or a root that needs
	// it). TLS 1.3, only for clients presenting a server certificate of
	// the cluster's CA (`sealroot pki issue`); never for machines. The
	// address is advertised to the peers as is, so the IP must be a
	// specific address they reach. Empty: this server serves no bases
	// (it can still fetch them).
	// Default: "" (not served).
	// Example: "10.0.0.1:9478".
	PeerListen string `json:"peer_listen,omitempty"`
}

// VolumesConfig is the "volumes" section: machines' copy-on-write volumes.
type VolumesConfig struct {
	// Dir holds the machines' volumes (absolute path; XFS or btrfs give
	// reflink copies).
	// Default: "<state_dir>/volumes".
	// Example: "/srv/sealroot/volumes".
	Dir string `json:"dir,omitempty"`
	// NoReflink forces copy-on-write overlays even on XFS and btrfs.
	// Default: false.
	// Example: true.
	NoReflink bool `json:"no_reflink,omitempty"`
}

// ISCSIConfig is the "iscsi" section; nil: no iSCSI roots. With a tunnel
// the target listens on the tunnel address only, at Port; Listen adds a
// plain listener for machines on the plain root transport.
type ISCSIConfig struct {
	// Listen is the plain listener's ip:port, advertised to agents as
	// is, so the IP must be a specific address. Empty: only the tunnel
	// listener.
	// Default: "" (none).
	// Example: "192.168.1.10:3260".
	Listen string `json:"listen,omitempty"`
	// Port is the tunnel listener's port.
	// Default: 3260.
	// Example: 3260.
	Port int `json:"port,omitempty"`
}

// NFSConfig is the "nfs" section; nil: no NFS roots. NFS roots are
// served by a supervised nfs-ganesha on the server's tunnel address only,
// so they need the tunnel on a kernel TUN interface (sealroot running as
// root, tunnel.netstack off).
type NFSConfig struct {
	// Dir holds the machines' roots (overlay upper directories). It must
	// support trusted xattrs (ext4, XFS, btrfs).
	// Default: "<state_dir>/nfs/roots".
	// Example: "/srv/sealroot/nfs".
	Dir string `json:"dir,omitempty"`
	// Port is the NFS port on the tunnel address.
	// Default: 2049.
	// Example: 2049.
	Port uint16 `json:"port,omitempty"`
	// Ganesha is the nfs-ganesha daemon binary (looked up in PATH).
	// Default: "ganesha.nfsd".
	// Example: "/usr/bin/ganesha.nfsd".
	Ganesha string `json:"ganesha,omitempty"`
	// GraceSeconds is NFSv4's grace period after a restart, in which
	// clients reclaim their state (package nfs).
	// Default: 20.
	// Example: 30.
	GraceSeconds uint32 `json:"grace_seconds,omitempty"`
	// LeaseSeconds is the NFSv4 lease: a client silent this long loses
	// its state.
	// Default: 20.
	// Example: 30.
	LeaseSeconds uint32 `json:"lease_seconds,omitempty"`
}
