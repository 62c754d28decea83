package cli

import (
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/wire"
)

// writeMachine prints m for people, with its root link when the server
// reported it (link nil: it did not).
func writeMachine(w io.Writer, m *api.Machine, link *api.RootLink) error {
	var b strings.Builder
	field := func(k, v string) { fmt.Fprintf(&b, "%-15s %s\n", k+":", v) }
	field("State", string(m.State))
	field("ID", m.ID)
	field("Name", orDash(safe(m.Name)))
	field("EK fingerprint", ekFingerprint(m))
	if m.EKCertStatus != "" {
		field("EK certificate", safe(m.EKCertStatus))
	}
	field("Policy", string(m.Policy))
	if note := bootStateNote(m); note != "" {
		field("Boot state", note)
	}
	field("Root", formatRoot(m))
	if m.Home != "" {
		field("Home server", safe(m.Home))
	}
	if m.Menu != nil {
		field("Menu", formatMenu(m.Menu))
	}
	writeRootLink(field, m, link)
	field("Hints", formatHints(m))
	field("Agent", orDash(safe(m.Hints.AgentVer)))
	lastSeen := formatTime(m.LastSeen)
	if m.LastAddress != "" {
		lastSeen += " from " + safe(m.LastAddress)
	}
	field("First seen", formatTime(m.FirstSeen))
	field("Last seen", lastSeen)
	field("Boot count", fmt.Sprint(m.BootCount))
	if m.Reason != "" {
		field("Reason", safe(m.Reason))
	}
	writePCRs(&b, "Pinned PCRs", m.Approved)
	if m.State == api.StatePending || m.State == api.StateNeedsReapproval {
		writePCRs(&b, "Reported PCRs", m.Reported)
	}
	if m.State == api.StateNeedsReapproval && m.Diff != "" {
		b.WriteString("Changes since approval:\n")
		for line := range strings.Lines(m.Diff) {
			b.WriteString("  " + safe(strings.TrimSuffix(line, "\n")) + "\n")
		}
	}
	writeHistory(&b, m.History)
	_, err := io.WriteString(w, b.String())
	return err
}

// formatRoot describes the root m mounts.
func formatRoot(m *api.Machine) string {
	if m.Group != "" {
		return "that of group " + safe(m.Group) + " (sealroot group list)"
	}
	return formatRootPlan(m.Root)
}

// formatRootPlan is "kind image=NAME [init=PATH]".
func formatRootPlan(r wire.RootPlan) string {
	s := orDash(safe(r.Kind))
	if img := r.Params[wire.ImageParam]; img != "" {
		s += " image=" + safe(img)
	}
	if via := r.Params[wire.VolatileVia]; via != "" {
		s += " via=" + safe(via)
	}
	s += perUserNote(r)
	if r.Init != "" {
		s += " init=" + safe(r.Init)
	}
	return s
}

// bootStateNote says plainly when a machine's boot state is not checked
// (identity-only) or cannot be (legacy BIOS measures no kernel, a UEFI
// kernel+initrd boot no initramfs).
func bootStateNote(m *api.Machine) string {
	bios := m.Hints.Firmware == "bios"
	switch {
	case m.Policy == api.PolicyIdentityOnly && bios:
		return "NOT checked: legacy BIOS cannot measure the kernel, initramfs or command line; policy identity-only trusts the TPM identity alone"
	case m.Policy == api.PolicyIdentityOnly:
		return "NOT checked: policy identity-only trusts the TPM identity alone"
	case bios:
		return "legacy BIOS: the kernel, initramfs and command line are not measured; only policy identity-only can admit this machine"
	case m.Approved != nil && m.Unmeasured != "":
		return "the approved boot does not measure the initramfs and command line: the server refuses such boots (" +
			m.Unmeasured + ")"
	}
	return ""
}

// plainWarning is shown for every machine whose root may cross the LAN
// outside the tunnel.
const plainWarning = "root transport is plain: root I/O crosses the LAN unencrypted and unauthenticated"

// writeRootLink prints how m reaches its root ("Root link") and a
// WARNING line when that may be the plain LAN. link nil means the server
// did not report it; then only the machine's own setting is known.
func writeRootLink(field func(k, v string), m *api.Machine, link *api.RootLink) {
	own := m.Root.Params[wire.TransportParam]
	var desc string
	plain := false
	switch {
	case link == nil && own == "":
		desc = "server default (the server did not report its root transport)"
	case link == nil:
		desc = safe(own) + " (set for this machine; the server did not report its tunnel)"
		plain = own == wire.TransportPlain
	case !link.Tunnel:
		desc, plain = "plain LAN (the server runs no WireGuard tunnel)", true
	case link.Transport == wire.TransportPlain && link.Peer:
		desc, plain = "WireGuard tunnel this boot, "+tunnelState(link)+"; plain allowed ("+transportSource(own)+")", true
	case link.Transport == wire.TransportPlain:
		desc, plain = "plain LAN ("+transportSource(own)+")", true
	default:
		desc = "WireGuard tunnel, " + tunnelState(link)
	}
	field("Root link", desc)
	if plain && hasNetworkRoot(m) {
		field("WARNING", plainWarning)
	}
}

// tunnelState is the machine's tunnel address and last handshake.
func tunnelState(l *api.RootLink) string {
	addr := "address " + orDash(safe(l.Address))
	switch {
	case !l.Peer:
		return addr + ", no peer (not booted with a key since, or revoked)"
	case l.LastHandshake.IsZero():
		return addr + ", no handshake yet"
	}
	out := addr + ", last handshake " + formatTime(l.LastHandshake)
	if l.Endpoint != "" {
		out += " from " + safe(l.Endpoint)
	}
	if l.RxBytes > 0 || l.TxBytes > 0 {
		out += fmt.Sprintf(", rx %s tx %s", formatBytes(uint64(l.RxBytes)), formatBytes(uint64(l.TxBytes)))
	}
	return out
}

func transportSource(own string) string {
	if own != "" {
		return fmt.Sprintf("transport %s set for this machine", safe(own))
	}
	return "server-wide --root-transport=plain"
}

// hasNetworkRoot reports whether m's root is network storage: every kind
// but none (attest only); a volatile root reads its base over NFS.
func hasNetworkRoot(m *api.Machine) bool {
	return m.Root.Kind != wire.RootNone
}

// writePCRs prints bs's PCRs as "index: short hex", in index order.
func writePCRs(b *strings.Builder, title string, bs *api.BootState) {
	if bs == nil || len(bs.PCRs) == 0 {
		fmt.Fprintf(b, "%-15s none\n", title+":")
		return
	}
	fmt.Fprintf(b, "%s:\n", title)
	for _, i := range slices.Sorted(maps.Keys(bs.PCRs)) {
		fmt.Fprintf(b, "  %2d: %s\n", i, shortHex(bs.PCRs[i]))
	}
}

// ekFingerprint is the SHA-256 of the EK public area, which is also the
// machine ID when the record is consistent.
func ekFingerprint(m *api.Machine) string {
	if len(m.EKPublic) == 0 {
		return "-"
	}
	fp := "sha256:" + wire.MachineID(m.EKPublic)
	if len(m.EKCert) > 0 {
		fp += " (with EK certificate)"
	}
	return fp
}

func formatHints(m *api.Machine) string {
	h := m.Hints
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+safe(v))
		}
	}
	add("hostname", h.Hostname)
	add("mac", strings.Join(h.MACs, ","))
	add("smbios-uuid", h.SMBIOSUUID)
	add("vendor", h.Vendor)
	add("product", h.Product)
	add("serial", h.Serial)
	add("firmware", h.Firmware)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// shortID is the first 12 hex digits of a machine ID.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// shortHex is the first 8 bytes of b in hex, with "…" if b is longer.
func shortHex(b []byte) string {
	if len(b) > 8 {
		return hex.EncodeToString(b[:8]) + "…"
	}
	return hex.EncodeToString(b)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// safe returns s, or s quoted if it holds anything but printable
// characters: names and hints come from machines and must not drive the
// operator's terminal.
func safe(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// perUserNote marks a per-user root plan.
func perUserNote(r wire.RootPlan) string {
	if r.Params[wire.PerUserParam] == "true" {
		return " per-user"
	}
	return ""
}
