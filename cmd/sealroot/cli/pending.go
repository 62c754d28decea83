package cli

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sealroot/sealroot/server/api"
)

// writePending lists pending machines with what an operator can match to a
// box: MACs, address, SMBIOS vendor, product and serial, first and last
// seen. Hints are unauthenticated; two pending machines claiming the same
// MAC, serial or SMBIOS UUID are flagged, since one of them may be lying.
func writePending(e *env, ms []*api.Machine) error {
	if len(ms) == 0 {
		_, err := fmt.Fprintln(e.Stdout, "no machine is waiting for approval")
		return err
	}
	dups := duplicateHints(ms)
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tMACS\tIP\tVENDOR\tPRODUCT\tSERIAL\tFIRST-SEEN\tLAST-SEEN\tNOTE")
	for _, m := range ms {
		h := m.Hints
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID[:min(16, len(m.ID))],
			orDash(safe(strings.Join(h.MACs, ","))), orDash(safe(hostOnly(m.LastAddress))),
			orDash(safe(h.Vendor)), orDash(safe(h.Product)), orDash(safe(h.Serial)),
			formatTime(m.FirstSeen), formatTime(m.LastSeen), orDash(strings.Join(dups[m.ID], "; ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(dups) > 0 {
		fmt.Fprintln(e.Stdout, "WARNING: pending machines claim the same hints (NOTE): hints are unauthenticated; compare the fingerprint on each machine's screen before approving.")
	}
	_, err := fmt.Fprintln(e.Stdout, "approve: sealroot machine approve FINGERPRINT (a unique prefix of at least 8 hex digits)")
	return err
}

// duplicateHints maps each machine ID to notes naming the other machines
// that claim one of its MACs, its serial number or its SMBIOS UUID.
func duplicateHints(ms []*api.Machine) map[string][]string {
	claims := map[string][]string{} // "mac 52:54:..." -> machine IDs
	for _, m := range ms {
		keys := []string{}
		for _, mac := range m.Hints.MACs {
			keys = append(keys, "MAC "+mac)
		}
		if m.Hints.Serial != "" {
			keys = append(keys, "serial "+m.Hints.Serial)
		}
		if m.Hints.SMBIOSUUID != "" {
			keys = append(keys, "SMBIOS UUID "+m.Hints.SMBIOSUUID)
		}
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			claims[k] = append(claims[k], m.ID)
		}
	}
	notes := map[string][]string{}
	for _, k := range slices.Sorted(maps.Keys(claims)) {
		ids := claims[k]
		if len(ids) < 2 {
			continue
		}
		for _, id := range ids {
			var others []string
			for _, o := range ids {
				if o != id {
					others = append(others, shortID(o))
				}
			}
			notes[id] = append(notes[id], fmt.Sprintf("DUPLICATE %s also claimed by %s", safe(k), strings.Join(others, ",")))
		}
	}
	return notes
}

// hostOnly drops a port from an address.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
