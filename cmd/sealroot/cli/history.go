package cli

import (
	"fmt"
	"strings"

	"github.com/sealroot/sealroot/server/api"
)

// writeHistory prints one line per boot attempt, oldest first:
//
//	2026-03-04T05:06:07Z  refused  event-log  from 10.0.0.5:4242 via sr-1 agent 0.3.0 41ms: PCR 15 is not zero
func writeHistory(b *strings.Builder, h []api.BootAttempt) {
	if len(h) == 0 {
		b.WriteString("Boot history:   none\n")
		return
	}
	fmt.Fprintf(b, "Boot history (last %d):\n", len(h))
	for _, a := range h {
		fmt.Fprintf(b, "  %s  %-16s %-16s from %s via %s agent %s %dms",
			formatTime(a.Time), safe(a.Outcome), orDash(safe(a.Check)), orDash(safe(a.Remote)),
			orDash(safe(a.Server)), orDash(safe(a.AgentVersion)), a.DurationMillis)
		if a.Reason != "" {
			b.WriteString(": " + safe(a.Reason))
		}
		b.WriteString("\n")
		if line := stagesLine(a); line != "" {
			b.WriteString("      agent: " + line + "\n")
		}
	}
}

// stagesLine is the agent's reported timeline of the boot a allowed:
//
//	entropy 0.00s > modules 0.31s > network 2.41s > attest 0.81s > tunnel 0.02s > root FAILED 1.20s: <error>
func stagesLine(a api.BootAttempt) string {
	parts := make([]string, 0, len(a.Stages))
	for _, st := range a.Stages {
		p := fmt.Sprintf("%s %.2fs", safe(st.Name), float64(st.Millis)/1000)
		if st.Name == a.Failed {
			p = fmt.Sprintf("%s FAILED %.2fs", safe(st.Name), float64(st.Millis)/1000)
		}
		parts = append(parts, p)
	}
	line := strings.Join(parts, " > ")
	if a.Failed != "" && a.Error != "" {
		line += ": " + safe(a.Error)
	}
	return line
}

// lastBoot is the time and outcome of m's newest attempt, or dashes.
func lastBoot(m *api.Machine) (at, outcome string) {
	a := m.LastAttempt()
	if a == nil {
		return "-", "-"
	}
	outcome = safe(a.Outcome)
	if a.Check != "" && a.Outcome == "refused" {
		outcome += "(" + safe(a.Check) + ")"
	}
	return formatTime(a.Time), outcome
}
