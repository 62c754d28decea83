package config

// TunnelConfig configures the WireGuard root link (package server/tunnel).
type TunnelConfig struct {
	// Prefix is the tunnel network; the server takes its first address,
	// machines the others.
	// Default: none (required).
	// Example: "10.200.0.0/16".
	Prefix string `json:"prefix"`
	// ListenPort is the WireGuard UDP port.
	// Default: 51820.
	// Example: 51820.
	ListenPort int `json:"listen_port,omitempty"`
	// Endpoint is the ip:port agents send WireGuard packets to: this
	// server's address on the boot network and listen_port.
	// Default: none (required).
	// Example: "192.168.1.10:51820".
	Endpoint string `json:"endpoint"`
	// Interface names the tunnel's kernel interface: a WireGuard
	// interface of the kernel's own when it has WireGuard (module
	// wireguard), else a TUN device driven by the embedded wireguard-go.
	// Default: "sealroot0".
	// Example: "sealroot0".
	Interface string `json:"interface,omitempty"`
	// Netstack forces the in-process network stack even as root (else a
	// kernel interface is used when running as root). NFS roots need
	// the kernel interface.
	// Default: false.
	// Example: true.
	Netstack bool `json:"netstack,omitempty"`
}
