package config

import (
	"fmt"
	"time"

	"github.com/sealroot/sealroot/server/attest"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
)

// LimitsConfig bounds what clients that have proven nothing can hold, so
// that a flood of connections cannot keep machines from booting. Every
// field is optional; the defaults suit a LAN where each machine has its
// own address. Durations are Go durations ("5s").
//
//	{"limits": {"conns_per_source": 16, "exchanges_per_source": 4, "http_conns_per_source": 8}}
type LimitsConfig struct {
	// HelloTimeout: from the end of the QUIC handshake to a complete
	// hello (Go duration).
	// Default: "5s".
	// Example: "10s".
	HelloTimeout string `json:"hello_timeout,omitempty"`
	// FrameTimeout: from the first byte of any attestation message to its
	// last (Go duration).
	// Default: "5s".
	// Example: "10s".
	FrameTimeout string `json:"frame_timeout,omitempty"`
	// ConnsPerSource: QUIC connections one address may hold.
	// Default: 16.
	// Example: 32.
	ConnsPerSource int `json:"conns_per_source,omitempty"`
	// ExchangesPerSource: attestations one address may have in progress.
	// Default: 4.
	// Example: 8.
	ExchangesPerSource int `json:"exchanges_per_source,omitempty"`
	// MaxExchanges: attestations in progress at once.
	// Default: 256.
	// Example: 512.
	MaxExchanges int `json:"max_exchanges,omitempty"`
	// RetryAbove: QUIC connections held above which new ones must prove
	// their address with a Retry; -1: always.
	// Default: 64.
	// Example: -1.
	RetryAbove int `json:"retry_above,omitempty"`
	// LoadAbove: QUIC connections held above which each address may hold
	// only a quarter of conns_per_source.
	// Default: 128.
	// Example: 256.
	LoadAbove int `json:"load_above,omitempty"`
	// PersonTimeout: how long an attestation waits for a person at the
	// machine's console (a login, a boot menu choice) (Go duration).
	// While it waits it holds none of the exchange slots above, only one
	// of waiting_per_source and max_waiting.
	// Default: "3m".
	// Example: "5m".
	PersonTimeout string `json:"person_timeout,omitempty"`
	// WaitingPerSource: attestations one address may have waiting for a
	// person.
	// Default: 2.
	// Example: 4.
	WaitingPerSource int `json:"waiting_per_source,omitempty"`
	// MaxWaiting: attestations waiting for a person at once.
	// Default: 64.
	// Example: 256.
	MaxWaiting int `json:"max_waiting,omitempty"`
	// HTTPConnsPerSource: boot HTTP connections one address may hold.
	// Default: 8.
	// Example: 16.
	HTTPConnsPerSource int `json:"http_conns_per_source,omitempty"`
	// HTTPStallTimeout: a download that takes no 64 KiB in this long is
	// cut (Go duration).
	// Default: "30s".
	// Example: "1m".
	HTTPStallTimeout string `json:"http_stall_timeout,omitempty"`
	// HTTPDownloads: boot artifact downloads served at once; further ones
	// wait for a slot in the order they came (up to 20 s, at most 8 per
	// slot), then are answered 503 with a Retry-After, and scripts
	// rendered meanwhile pause as long as the server booked for their
	// machine. A machine
	// whose kernel download completed keeps its slot for its initrd
	// (from its address, once, for up to 5 s).
	// Default: 128.
	// Example: 64.
	HTTPDownloads int `json:"http_downloads,omitempty"`
	// TFTPTransfersPerSource: TFTP transfers one address may run.
	// Default: 4.
	// Example: 8.
	TFTPTransfersPerSource int `json:"tftp_transfers_per_source,omitempty"`
	// TFTPMaxTransferTime: a TFTP transfer still running after this is
	// ended (Go duration).
	// Default: "2m".
	// Example: "5m".
	TFTPMaxTransferTime string `json:"tftp_max_transfer_time,omitempty"`
	// LetGoAfter: how long a machine's WireGuard tunnel peer must have
	// had no handshake (and, for a user's root, its iSCSI session have
	// been lost) before the machine counts as off: `image capture --from`
	// and `backup --with-roots` of an NFS root wait for it, and a user's
	// root is freed after it (Go duration). WireGuard handshakes every two
	// minutes while traffic flows, so a value under about 2m15s can count
	// a running machine as off; shorter values are for tests.
	// Default: "3m".
	// Example: "5m".
	LetGoAfter string `json:"let_go_after,omitempty"`
	// BootGrace: how long after the server hands out a machine's root
	// the machine counts as booting while it has not attached it yet, so
	// that a backup or `image capture --from` does not take the root from
	// under a boot (Go duration). An agent attaches its root seconds
	// after its credential; shorter values are for tests.
	// Default: "2m".
	// Example: "5m".
	BootGrace string `json:"boot_grace,omitempty"`
	// ISCSIConns: iSCSI connections open at once on each portal, logged in
	// or not; more are closed on accept. Every machine on an iSCSI root
	// holds one for as long as it runs, so this must exceed the number of
	// such machines (a boot storm found the former fixed 256).
	// Default: 4096.
	// Example: 10000.
	ISCSIConns int `json:"iscsi_conns,omitempty"`
}

// Limits is LimitsConfig parsed; zero fields take the services' defaults.
type Limits struct {
	Attest       attest.Limits
	MaxExchanges int
	HTTP         boothttp.Limits
	// TFTPPerSource and TFTPMaxTime are tftp.Server's TransfersPerSource
	// and MaxTransferTime.
	TFTPPerSource int
	TFTPMaxTime   time.Duration
	// LetGoAfter is let_go_after; zero means the default, 3 minutes
	// (letgo.DefaultGrace).
	LetGoAfter time.Duration
	// BootGrace is boot_grace, roots.Config.BootGrace; zero means the
	// default, 2 minutes.
	BootGrace time.Duration
	// ISCSIConns bounds each iSCSI portal's open connections.
	ISCSIConns int
}

// Parse checks c; a nil c means every default.
func (c *LimitsConfig) Parse() (Limits, error) {
	var l Limits
	if c == nil {
		return l, nil
	}
	for _, f := range []struct {
		name string
		s    string
		d    *time.Duration
	}{
		{"hello_timeout", c.HelloTimeout, &l.Attest.HelloTimeout},
		{"frame_timeout", c.FrameTimeout, &l.Attest.FrameTimeout},
		{"person_timeout", c.PersonTimeout, &l.Attest.PersonTimeout},
		{"http_stall_timeout", c.HTTPStallTimeout, &l.HTTP.StallTimeout},
		{"tftp_max_transfer_time", c.TFTPMaxTransferTime, &l.TFTPMaxTime},
		{"let_go_after", c.LetGoAfter, &l.LetGoAfter},
		{"boot_grace", c.BootGrace, &l.BootGrace},
	} {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil || d <= 0 {
			return l, fmt.Errorf("limits: %s %q: want a positive duration such as \"5s\"", f.name, f.s)
		}
		*f.d = d
	}
	for _, f := range []struct {
		name string
		n    int
	}{
		{"conns_per_source", c.ConnsPerSource}, {"exchanges_per_source", c.ExchangesPerSource},
		{"max_exchanges", c.MaxExchanges}, {"load_above", c.LoadAbove}, {"http_conns_per_source", c.HTTPConnsPerSource},
		{"http_downloads", c.HTTPDownloads},
		{"tftp_transfers_per_source", c.TFTPTransfersPerSource},
		{"waiting_per_source", c.WaitingPerSource}, {"max_waiting", c.MaxWaiting},
		{"iscsi_conns", c.ISCSIConns},
	} {
		if f.n < 0 {
			return l, fmt.Errorf("limits: %s %d: want a positive number (0: the default)", f.name, f.n)
		}
	}
	if c.RetryAbove < -1 {
		return l, fmt.Errorf("limits: retry_above %d: want a positive number, 0 for the default or -1 for always", c.RetryAbove)
	}
	l.Attest.ConnsPerSource = c.ConnsPerSource
	l.Attest.ExchangesPerSource = c.ExchangesPerSource
	l.Attest.RetryAbove = c.RetryAbove
	l.Attest.LoadAbove = c.LoadAbove
	l.Attest.WaitingPerSource = c.WaitingPerSource
	l.Attest.MaxWaiting = c.MaxWaiting
	l.MaxExchanges = c.MaxExchanges
	l.HTTP.ConnsPerSource = c.HTTPConnsPerSource
	l.HTTP.Downloads = c.HTTPDownloads
	l.TFTPPerSource = c.TFTPTransfersPerSource
	l.ISCSIConns = c.ISCSIConns
	return l, nil
}
