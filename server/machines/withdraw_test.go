package machines

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/store"
)

// withdrawals records the machines whose access is withdrawn.
type withdrawals []string

func (w *withdrawals) Withdraw(_ context.Context, id string) error {
	*w = append(*w, id[:1])
	return nil
}

func TestWithdrawAfterRevokeAndForget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var removed withdrawals
	e.mgr = New(Config{Store: e.st, Box: e.mgr.box, Audit: e.log, Withdraw: &removed})
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	e.add(t, a, "", store.StateApproved, true)
	e.add(t, b, "", store.StateApproved, true)
	if _, err := e.mgr.Revoke(ctx, a, "stolen"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := e.mgr.Revoke(ctx, a, "bad\x00reason"); err == nil {
		t.Fatal("Revoke with a bad reason succeeded")
	}
	if err := e.mgr.Forget(ctx, b); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if err := e.mgr.Forget(ctx, strings.Repeat("9", 64)); err == nil {
		t.Fatal("Forget(unknown) succeeded")
	}
	if want := []string{"a", "b"}; !slices.Equal([]string(removed), want) {
		t.Fatalf("Withdraw calls = %v, want %v (successful revoke and forget only)", removed, want)
	}
}
