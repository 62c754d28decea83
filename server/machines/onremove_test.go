package machines

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/store"
)

func TestOnRemoveRunsAfterRevokeAndForget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var removed []string
	e.mgr.SetOnRemove(func(_ context.Context, id string) { removed = append(removed, id[:1]) })
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
	if want := []string{"a", "b"}; !slices.Equal(removed, want) {
		t.Fatalf("OnRemove calls = %v, want %v (successful revoke and forget only)", removed, want)
	}
}
