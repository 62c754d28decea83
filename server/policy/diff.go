package policy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/server/store"
)

// Limits of DiffEvents' output.
const (
	// MaxDiffSize is the largest diff DiffEvents returns, in bytes.
	MaxDiffSize = 16 << 10
	// maxLCSEvents bounds the events per PCR compared by LCS; beyond it the
	// remaining events are listed as removed and added.
	maxLCSEvents = 256
)

// DiffEvents describes, for each PCR whose value differs between old and
// new, the value change and the events removed (-) and added (+), e.g.
//
//	PCR 4 changed: 1a2b3c4d… -> 5e6f7a8b…
//	  - #12 EV_EFI_BOOT_SERVICES_APPLICATION sha256:abcd1234 (\vmlinuz.efi)
//	  + #12 EV_EFI_BOOT_SERVICES_APPLICATION sha256:9f8e7d6c (\vmlinuz.efi)
//
// A nil state counts as empty. The output is capped at MaxDiffSize.
func DiffEvents(old, new *store.BootState) string {
	if old == nil {
		old = &store.BootState{}
	}
	if new == nil {
		new = &store.BootState{}
	}
	var pcrs []int
	for pcr := range old.PCRs {
		pcrs = append(pcrs, pcr)
	}
	for pcr := range new.PCRs {
		if _, ok := old.PCRs[pcr]; !ok {
			pcrs = append(pcrs, pcr)
		}
	}
	slices.Sort(pcrs)

	var w diffWriter
	for _, pcr := range pcrs {
		ov, oOK := old.PCRs[pcr]
		nv, nOK := new.PCRs[pcr]
		if oOK == nOK && bytes.Equal(ov, nv) {
			continue
		}
		w.line(fmt.Sprintf("PCR %d changed: %s -> %s", pcr, short(ov, oOK), short(nv, nOK)))
		n := diffPCR(&w, eventsOf(old.Events, pcr), eventsOf(new.Events, pcr))
		if n == 0 {
			w.line("  (no event differences recorded)")
		}
	}
	return w.String()
}

func short(v []byte, ok bool) string {
	if !ok {
		return "(absent)"
	}
	if len(v) > 4 {
		return hex.EncodeToString(v[:4]) + "…"
	}
	return hex.EncodeToString(v)
}

func eventsOf(events []eventlog.Event, pcr int) []eventlog.Event {
	var out []eventlog.Event
	for _, e := range events {
		if e.PCR == pcr {
			out = append(out, e)
		}
	}
	return out
}

func sameEvent(a, b eventlog.Event) bool {
	return a.Type == b.Type && bytes.Equal(a.Digest, b.Digest)
}

// diffPCR writes the removed and added events of one PCR in log order,
// using the longest common subsequence of (type, digest), and returns the
// number of lines written.
func diffPCR(w *diffWriter, old, new []eventlog.Event) int {
	var oldTail, newTail []eventlog.Event
	if len(old) > maxLCSEvents {
		old, oldTail = old[:maxLCSEvents], old[maxLCSEvents:]
	}
	if len(new) > maxLCSEvents {
		new, newTail = new[:maxLCSEvents], new[maxLCSEvents:]
	}
	// l[i][j] = LCS length of old[i:] and new[j:].
	l := make([][]int, len(old)+1)
	for i := range l {
		l[i] = make([]int, len(new)+1)
	}
	for i := len(old) - 1; i >= 0; i-- {
		for j := len(new) - 1; j >= 0; j-- {
			if sameEvent(old[i], new[j]) {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	n := 0
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case i < len(old) && j < len(new) && sameEvent(old[i], new[j]):
			i, j = i+1, j+1
		case j == len(new) || (i < len(old) && l[i+1][j] >= l[i][j+1]):
			w.line(eventLine('-', old[i]))
			i, n = i+1, n+1
		default:
			w.line(eventLine('+', new[j]))
			j, n = j+1, n+1
		}
	}
	for _, e := range oldTail {
		w.line(eventLine('-', e))
		n++
	}
	for _, e := range newTail {
		w.line(eventLine('+', e))
		n++
	}
	return n
}

func eventLine(sign byte, e eventlog.Event) string {
	d := e.Digest
	if len(d) > 4 {
		d = d[:4]
	}
	name := e.TypeName
	if name == "" {
		name = fmt.Sprintf("0x%08x", e.Type)
	}
	s := fmt.Sprintf("  %c #%d %s sha256:%x", sign, e.Sequence, name, d)
	if e.Description != "" {
		s += " (" + e.Description + ")"
	}
	return s
}

// diffWriter collects lines up to MaxDiffSize, then counts what it drops.
type diffWriter struct {
	b       strings.Builder
	dropped int
}

const truncNote = "… %d more lines"

func (w *diffWriter) line(s string) {
	if w.dropped > 0 || w.b.Len()+len(s)+1 > MaxDiffSize-len(truncNote)-20 {
		w.dropped++
		return
	}
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

func (w *diffWriter) String() string {
	if w.dropped > 0 {
		return w.b.String() + fmt.Sprintf(truncNote, w.dropped) + "\n"
	}
	return w.b.String()
}
