package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrConflict is returned when an etcd transaction lost to concurrent
// writers more than maxTxnAttempts times in a row.
var ErrConflict = errors.New("store transaction conflicted with concurrent writers")

// maxTxnAttempts bounds the retries of one etcd transaction; between
// attempts it waits a random time up to txnBackoff doubled with each
// attempt, at most maxTxnBackoff, so writers racing for one key (the
// version counter, when many machines enroll at once) spread out instead
// of colliding again.
const (
	maxTxnAttempts = 100
	txnBackoff     = time.Millisecond
	maxTxnBackoff  = 64 * time.Millisecond
)

// etcdTx is one optimistic transaction on etcd: every read is served at
// one revision and remembered with the key's mod revision; commit writes
// the buffered puts and deletes only if nothing read changed since
// (If(mod revisions unchanged) Then(writes)), which makes the whole
// read-decide-write serializable across servers. A lost commit is
// retried from scratch by Etcd.txn.
type etcdTx struct {
	ctx context.Context
	kv  clientv3.KV
	rev int64 // read revision; 0 until the first read

	reads  map[string]int64 // key -> mod revision read (0: absent)
	ranges []string         // prefixes read
	writes map[string]*string
	order  []string // write keys in order, for a stable Then
	// dropped are prefixes deleted whole, each one operation however
	// many keys it holds (etcd allows 128 operations per transaction).
	// No key under them may be written in the same transaction.
	dropped []string
}

func newEtcdTx(ctx context.Context, kv clientv3.KV) *etcdTx {
	return &etcdTx{ctx: ctx, kv: kv, reads: map[string]int64{}, writes: map[string]*string{}}
}

func (tx *etcdTx) opts(extra ...clientv3.OpOption) []clientv3.OpOption {
	if tx.rev != 0 {
		extra = append(extra, clientv3.WithRev(tx.rev))
	}
	return extra
}

func (tx *etcdTx) setRev(r *clientv3.GetResponse) {
	if tx.rev == 0 {
		tx.rev = r.Header.Revision
	}
}

// get returns the value of key, seeing this transaction's own writes; ok
// is false when there is none.
func (tx *etcdTx) get(key string) ([]byte, bool, error) {
	if v, ok := tx.writes[key]; ok {
		if v == nil {
			return nil, false, nil
		}
		return []byte(*v), true, nil
	}
	if tx.isDropped(key) {
		return nil, false, nil
	}
	resp, err := tx.kv.Get(tx.ctx, key, tx.opts()...)
	if err != nil {
		return nil, false, fmt.Errorf("etcd get: %w", err)
	}
	tx.setRev(resp)
	if len(resp.Kvs) == 0 {
		tx.reads[key] = 0
		return nil, false, nil
	}
	tx.reads[key] = resp.Kvs[0].ModRevision
	return resp.Kvs[0].Value, true, nil
}

// getAll is get of several keys in one round trip (a read-only etcd
// transaction at the read revision).
func (tx *etcdTx) getAll(keys ...string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	var ops []clientv3.Op
	var at []int
	for i, k := range keys {
		if v, ok := tx.writes[k]; ok {
			if v != nil {
				out[i] = []byte(*v)
			}
			continue
		}
		if tx.isDropped(k) {
			continue
		}
		ops = append(ops, clientv3.OpGet(k, tx.opts()...))
		at = append(at, i)
	}
	if len(ops) == 0 {
		return out, nil
	}
	resp, err := tx.kv.Txn(tx.ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd get: %w", err)
	}
	if tx.rev == 0 {
		tx.rev = resp.Header.Revision
	}
	for j, r := range resp.Responses {
		i, k := at[j], keys[at[j]]
		kvs := r.GetResponseRange().Kvs
		if len(kvs) == 0 {
			tx.reads[k] = 0
			continue
		}
		tx.reads[k] = kvs[0].ModRevision
		out[i] = kvs[0].Value
	}
	return out, nil
}

// kv is one key and value of a range.
type kv struct {
	key   string
	value []byte
}

// scan returns every key under prefix, sorted by key, with this
// transaction's writes applied. A commit fails if a key under prefix was
// put since the read revision (a concurrent delete under prefix is not
// seen: callers only scan where a vanished key cannot make the decision
// wrong, and read the keys they write individually).
func (tx *etcdTx) scan(prefix string) ([]kv, error) {
	resp, err := tx.kv.Get(tx.ctx, prefix, tx.opts(clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))...)
	if err != nil {
		return nil, fmt.Errorf("etcd range: %w", err)
	}
	tx.setRev(resp)
	tx.ranges = append(tx.ranges, prefix)
	var out []kv
	seen := map[string]bool{}
	for _, e := range resp.Kvs {
		k := string(e.Key)
		seen[k] = true
		if w, ok := tx.writes[k]; ok {
			if w != nil {
				out = append(out, kv{k, []byte(*w)})
			}
			continue
		}
		if tx.isDropped(k) {
			continue
		}
		out = append(out, kv{k, e.Value})
	}
	for _, k := range tx.order {
		if w := tx.writes[k]; w != nil && !seen[k] && len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, kv{k, []byte(*w)})
		}
	}
	return out, nil
}

func (tx *etcdTx) put(key string, value []byte) {
	v := string(value)
	tx.write(key, &v)
}

func (tx *etcdTx) del(key string) { tx.write(key, nil) }

// delPrefix deletes every key under prefix, in one operation; keys put
// there by others before the commit go too.
func (tx *etcdTx) delPrefix(prefix string) { tx.dropped = append(tx.dropped, prefix) }

func (tx *etcdTx) isDropped(key string) bool {
	for _, p := range tx.dropped {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func (tx *etcdTx) write(key string, v *string) {
	if _, ok := tx.writes[key]; !ok {
		tx.order = append(tx.order, key)
	}
	tx.writes[key] = v
}

// nextSeq returns the next value of the database-wide counter at key,
// read and written in this transaction, so two servers never hand out
// the same value.
func (tx *etcdTx) nextSeq(key string) (uint64, error) {
	v, ok, err := tx.get(key)
	if err != nil {
		return 0, err
	}
	var n uint64
	if ok {
		if n, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return 0, fmt.Errorf("sequence %q: %w", v, ErrCorrupt)
		}
	}
	n++
	tx.put(key, []byte(strconv.FormatUint(n, 10)))
	return n, nil
}

// commit writes the buffered changes if every read is still current. It
// reports whether it did.
func (tx *etcdTx) commit() (bool, error) {
	if len(tx.writes) == 0 && len(tx.dropped) == 0 {
		return true, nil
	}
	var cmps []clientv3.Cmp
	for k, rev := range tx.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	for _, p := range tx.ranges {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", tx.rev+1).WithPrefix())
	}
	ops := make([]clientv3.Op, 0, len(tx.order))
	for _, k := range tx.order {
		if v := tx.writes[k]; v != nil {
			ops = append(ops, clientv3.OpPut(k, *v))
		} else {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	for _, p := range tx.dropped {
		ops = append(ops, clientv3.OpDelete(p, clientv3.WithPrefix()))
	}
	resp, err := tx.kv.Txn(tx.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("etcd txn: %w", err)
	}
	return resp.Succeeded, nil
}
