package admission

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/boot/pace/pacetest"
)

// take runs q.Take(ctx, key) in the background; its result arrives on
// the channel.
func take(q *Queue[string], ctx context.Context, key string) <-chan error {
	c := make(chan error, 1)
	go func() { c <- q.Take(ctx, key) }()
	return c
}

// waitLine waits until n clients are in q's line.
func waitLine(t *testing.T, q *Queue[string], n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); q.Load().Waiting != n; {
		if time.Now().After(deadline) {
			t.Fatalf("clients in line = %d, want %d", q.Load().Waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func busy(t *testing.T, what string, err error) time.Duration {
	t.Helper()
	var b *BusyError
	if !errors.As(err, &b) {
		t.Fatalf("%s: Take = %v, want a *BusyError", what, err)
	}
	return b.RetryAfter
}

func result(t *testing.T, what string, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Take still waiting", what)
		return nil
	}
}

// A client refused after waiting its time in line keeps its place: when
// it comes back it goes ahead of a client that arrived after it (which a
// full line then refuses), and takes the next free slot.
func TestQueueReturningClientGoesAheadOfLaterArrivals(t *testing.T) {
	clk := pacetest.NewFakeClock()
	q := NewQueue[string](1, 1, clk.Now)
	ctx := t.Context()
	if err := q.Take(ctx, "a"); err != nil {
		t.Fatalf("first Take = %v, want the free slot", err)
	}
	clk.Advance(time.Second)
	bctx, bGone := context.WithCancel(ctx)
	bFirst := take(q, bctx, "b")
	waitLine(t, q, 1)
	clk.Advance(time.Second)
	busy(t, "c, the line full of an earlier place", q.Take(ctx, "c"))
	bGone() // b's hello time is over
	busy(t, "b after its time in line", result(t, "b", bFirst))
	if l := q.Load(); l.Waiting != 0 || l.Booked != 2 {
		t.Fatalf("load = %+v, want none in line and b and c booked", l)
	}

	clk.Advance(time.Second)
	d := take(q, ctx, "d") // arrives after b, finds the line empty
	waitLine(t, q, 1)
	bAgain := take(q, ctx, "b")
	busy(t, "d, pushed out of the full line by b's earlier place", result(t, "d", d))
	waitLine(t, q, 1)
	q.Release(3 * time.Second) // a is done
	if err := result(t, "b again", bAgain); err != nil {
		t.Fatalf("b back at its time: Take = %v, want the slot a freed", err)
	}
	if l := q.Load(); l.Taken != 1 || l.Waiting != 0 {
		t.Errorf("load = %+v, want b's slot taken and nobody in line", l)
	}
}

// A refused client's time to come back counts the clients ahead of its
// place, one Interval each; refused again, it keeps its place instead of
// being booked behind everyone refused since (the times do not compound).
func TestQueueRetryAfterByPlace(t *testing.T) {
	clk := pacetest.NewFakeClock()
	const slots = 4
	q := NewQueue[string](slots, 0, clk.Now)
	ctx := t.Context()
	for range 64 {
		if err := q.Take(ctx, "warm"); err != nil {
			t.Fatal(err)
		}
		q.Release(time.Second)
	}
	interval := q.Pacer().Interval()
	if interval < 225*time.Millisecond || interval > 250*time.Millisecond {
		t.Fatalf("interval = %v, want about 1s/4", interval)
	}
	for range slots {
		if err := q.Take(ctx, "held"); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	for i, k := range keys {
		clk.Advance(time.Millisecond)
		got := busy(t, k, q.Take(ctx, k))
		if want := max(time.Duration(i+1)*interval, MinRetryAfter); got != want {
			t.Errorf("%s, %d ahead: retry after %v, want %v", k, i, got, want)
		}
	}
	// m0 comes back at its time and the slots are still full: still first.
	clk.Advance(interval)
	if got, want := busy(t, "m0 again", q.Take(ctx, "m0")), max(interval, MinRetryAfter); got != want {
		t.Errorf("m0 refused again: retry after %v, want %v (its place kept, not behind m1-m7)", got, want)
	}
	// m3 likewise, behind m0-m2 only.
	if got, want := busy(t, "m3 again", q.Take(ctx, "m3")), 4*interval; got != want {
		t.Errorf("m3 refused again: retry after %v, want %v", got, want)
	}
	// A newcomer is behind all eight.
	if got, want := busy(t, "newcomer", q.Take(ctx, "new")), 9*interval; got != want {
		t.Errorf("newcomer: retry after %v, want %v", got, want)
	}
	// A free slot goes to whoever asks (nobody waits in line): m5 takes it
	// and its booking goes.
	q.Release(time.Second)
	if err := q.Take(ctx, "m5"); err != nil {
		t.Fatalf("m5 with a slot free: %v", err)
	}
	if l := q.Load(); l.Booked != 8 {
		t.Errorf("booked = %d, want 8 (m0-m7 and the newcomer, less m5)", l.Booked)
	}
}

// A place is kept only for a while past the time given: a client that
// comes back much later is a newcomer, behind those who came meanwhile.
func TestQueueBookingExpires(t *testing.T) {
	clk := pacetest.NewFakeClock()
	q := NewQueue[string](1, 0, clk.Now)
	ctx := t.Context()
	if err := q.Take(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	interval := q.Pacer().Interval() // 200ms, the initial hold: 1 slot
	d := busy(t, "late", q.Take(ctx, "late"))
	clk.Advance(time.Millisecond)
	if got, want := busy(t, "punctual", q.Take(ctx, "punctual")), 2*interval; got != want {
		t.Fatalf("punctual, behind late: %v, want %v", got, want)
	}
	clk.Advance(2*d + bookingGrace) // late's booking has expired, punctual's not
	if got, want := busy(t, "late, long after its time", q.Take(ctx, "late")), 2*interval; got != want {
		t.Errorf("late came back after its booking expired: retry after %v, want %v (behind punctual)", got, want)
	}
	if l := q.Load(); l.Booked != 2 {
		t.Errorf("booked = %d, want 2 (punctual's and late's new one)", l.Booked)
	}
}

// However many clients ask at once, no more than the slots are taken and
// no more than the line's bound wait; the others are refused at once.
func TestQueueBounded(t *testing.T) {
	const slots, line, clients = 3, 5, 64
	q := NewQueue[string](slots, line, nil)
	ctx, cancel := context.WithCancel(t.Context())
	results := make(chan error, clients)
	for i := range clients {
		go func() { results <- q.Take(ctx, string(rune('A'+i))) }()
	}
	refused := 0
	for refused < clients-slots-line {
		err := <-results
		if err == nil {
			continue
		}
		busy(t, "a client past the bounds", err)
		refused++
		if l := q.Load(); l.Taken > slots || l.Waiting > line {
			t.Fatalf("load = %+v, want at most %d taken and %d waiting", l, slots, line)
		}
	}
	waitLine(t, q, line)
	if l := q.Load(); l.Taken != slots {
		t.Fatalf("load = %+v, want %d taken", l, slots)
	}
	cancel()
	for range line {
		busy(t, "a client whose time in line ended", <-results)
	}
	if l := q.Load(); l.Waiting != 0 || l.Booked != clients-slots {
		t.Errorf("load = %+v, want nobody in line and %d booked", l, clients-slots)
	}
}
