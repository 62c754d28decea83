package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	"github.com/sealroot/sealroot/server/eventlog"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/wire"
)

// A remembered log answers only for the same log and PCR values: a
// rewritten log or other quoted values are verified again, and refused.
func TestVerifiedLogsOnlyRepeat(t *testing.T) {
	a, err := loadgen.NewAgent(rand.Reader, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := a.EventLog()
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := a.ReadPCRs(context.Background(), DefaultPCRs)
	if err != nil {
		t.Fatal(err)
	}
	var c verifiedLogs
	want, err := c.verify("m1", raw, pcrs)
	if err != nil {
		t.Fatalf("verify(good log) = %v", err)
	}
	if got, err := c.verify("m1", raw, pcrs); err != nil || len(got) != len(want) {
		t.Fatalf("verify(same log again) = %d events, %v; want %d", len(got), err, len(want))
	}

	tampered := bytes.Clone(raw)
	tampered[len(tampered)-1] ^= 1
	if _, err := c.verify("m1", tampered, pcrs); err == nil {
		t.Error("verify(rewritten log) after a remembered good one = nil error, want a refusal")
	}
	other := slices.Clone(pcrs)
	for i := range other {
		if other[i].Index == 0 {
			other[i] = wire.PCR{Index: 0, Digest: bytes.Repeat([]byte{1}, 32)}
		}
	}
	if _, err := c.verify("m1", raw, other); !errors.Is(err, eventlog.ErrReplay) {
		t.Errorf("verify(log, other PCR 0) = %v, want %v", err, eventlog.ErrReplay)
	}
	// The copy handed out is the caller's: changing it changes no later answer.
	got, _ := c.verify("m1", raw, pcrs)
	got[0].TypeName = "changed"
	if again, _ := c.verify("m1", raw, pcrs); again[0].TypeName == "changed" {
		t.Error("a caller's change to the events reached the remembered copy")
	}
}
