package events

import (
	"errors"
	"testing"

	"github.com/sealroot/sealroot/server/audit"
)

func TestBus(t *testing.T) {
	var b Bus
	fast, slow := b.Subscribe(), b.Subscribe()
	for i := range buffer + 1 {
		b.Publish(audit.Entry{Action: "attest", Reason: string(rune('a' + i%26))})
		if i < buffer {
			<-fast.C()
		}
	}
	if e, ok := <-fast.C(); !ok || e.Action != "attest" {
		t.Fatalf("fast subscriber lost the last entry (open %v)", ok)
	}
	for range slow.C() {
	}
	if !errors.Is(slow.Err(), ErrFellBehind) {
		t.Errorf("slow subscriber ended with %v, want ErrFellBehind", slow.Err())
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("%d subscribers, want 1 (the fast one)", n)
	}
	b.Close()
	if _, ok := <-fast.C(); ok || !errors.Is(fast.Err(), ErrClosed) {
		t.Errorf("after Close: open %v, err %v", ok, fast.Err())
	}
	late := b.Subscribe()
	if _, ok := <-late.C(); ok || !errors.Is(late.Err(), ErrClosed) {
		t.Errorf("subscription after Close: open %v, err %v", ok, late.Err())
	}
	b.Unsubscribe(late)
	b.Unsubscribe(fast)
}
