package store

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many updates one transaction carries.
const maxGroup = 1000

// groupCommit runs concurrent write transactions as one bbolt transaction
// (one commit, one fsync), without the fixed delay of bolt.DB.Batch: an
// update arriving while no commit runs commits at once, alone; updates
// arriving during a commit queue up and the first of them commits the
// whole queue as soon as that commit ends. Under load every commit
// carries what arrived during the previous one; idle, none waits.
//
// As with bolt.DB.Batch, an update may run more than once: when the
// shared transaction fails, each of its updates is run again alone, so
// one failing update cannot fail the others. Updates must be idempotent.
type groupCommit struct {
	db *bolt.DB

	mu    sync.Mutex // guards the fields below
	queue []*groupCall
	busy  bool // a leader is committing or about to
}

type groupCall struct {
	fn   func(*bolt.Tx) error
	err  error
	wake chan bool // true: lead the next commit; false: done, err is set
}

// update runs fn in a write transaction shared with concurrent updates
// and returns once that transaction committed or failed.
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	c := &groupCall{fn: fn, wake: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead && !<-c.wake {
		return c.err
	}
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	g.commit(group)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].wake <- true // the next leader
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for _, o := range group {
		if o != c {
			o.wake <- false
		}
	}
	return c.err
}

// commit runs group in one transaction, or each alone if that fails.
func (g *groupCommit) commit(group []*groupCall) {
	err := g.db.Update(func(tx *bolt.Tx) error {
		for _, c := range group {
			if err := c.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, c := range group {
			c.err = err
		}
		return
	}
	for _, c := range group {
		c.err = g.db.Update(c.fn)
	}
}
