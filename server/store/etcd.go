package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd is the Store on etcd, for several sealroot servers sharing state.
// It keeps the records of the bbolt store under a key prefix (see
// etcdKeys), and every change, single- or multi-key, is one etcd
// transaction decided against the records read at one revision (etcdTx):
// a machine update, a release included, commits only if the machine, its
// seen record and everything else it read are unchanged, else it is
// retried on fresh records. Machine.Version comes from one counter key
// that every version-changing transaction reads and writes, so two
// servers never hand out the same version. It is safe for concurrent use.
type Etcd struct {
	client *clientv3.Client
	keys   etcdKeys
	logger hclog.Logger
	owned  bool // Close closes client
}

var (
	_ Store     = (*Etcd)(nil)
	_ UserStore = (*Etcd)(nil)
)

// etcdKeys is the key layout under a prefix (meta/version is SchemaVersion,
// as bbolt's):
//
//	<p>meta/version            -> "5"
//	<p>meta/seq                -> the last Machine.Version handed out
//	<p>machines/<id>           -> JSON Machine
//	<p>seen/<id>               -> JSON seen
//	<p>names/<name>            -> <id>  (unique index, cluster-wide)
//	<p>secrets/<id>/<name>     -> age ciphertext
//	<p>groups/<name>           -> JSON Group
//	<p>group_versions/<name>   -> the group's version (see bumpGroup)
//	<p>files/<owner key>/<path> -> JSON File
//	<p>users/<name>            -> JSON User
//	<p>dhcp_leases/<IPv4>      -> JSON DHCPLease
//	<p>dhcp_reservations/<MAC> -> JSON DHCPReservation
//	<p>history/<id>            -> JSON []BootAttempt (the newest MaxHistory)
//	<p>boot_logs/<id>          -> JSON []BootLog
//	<p>userleases/<user>       -> JSON UserLease
type etcdKeys struct{ prefix string }

func (k etcdKeys) version() string           { return k.prefix + "meta/version" }
func (k etcdKeys) seq() string               { return k.prefix + "meta/seq" }
func (k etcdKeys) machines() string          { return k.prefix + "machines/" }
func (k etcdKeys) machine(id string) string  { return k.machines() + id }
func (k etcdKeys) seens() string             { return k.prefix + "seen/" }
func (k etcdKeys) seen(id string) string     { return k.seens() + id }
func (k etcdKeys) names() string             { return k.prefix + "names/" }
func (k etcdKeys) name(n string) string      { return k.names() + n }
func (k etcdKeys) secrets(id string) string  { return k.prefix + "secrets/" + id + "/" }
func (k etcdKeys) groups() string            { return k.prefix + "groups/" }
func (k etcdKeys) group(n string) string     { return k.groups() + n }
func (k etcdKeys) files(owner []byte) string { return k.prefix + "files/" + string(owner) + "/" }
func (k etcdKeys) users() string             { return k.prefix + "users/" }
func (k etcdKeys) leases() string            { return k.prefix + "dhcp_leases/" }
func (k etcdKeys) reservations() string      { return k.prefix + "dhcp_reservations/" }
func (k etcdKeys) watchPrefix() string       { return k.machines() }

// EtcdConfig selects an etcd cluster for NewEtcdClient.
type EtcdConfig struct {
	Endpoints []string
	// TLS client certificate, key and the CA that signed the members'
	// certificates (PEM files); all empty for plain connections.
	CertFile, KeyFile, CAFile string
	// Prefix is prepended to every key, so several sealroot
	// installations can share one etcd.
	Prefix string
}

// OpenEtcd connects to the etcd cluster of cfg and opens the store there.
func OpenEtcd(ctx context.Context, cfg EtcdConfig, logger hclog.Logger) (*Etcd, error) {
	c, err := newEtcdClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s, err := NewEtcd(ctx, c, cfg.Prefix, logger)
	if err != nil {
		c.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// NewEtcd opens the store under prefix through client, creating the
// schema record of an empty prefix. Close leaves client open.
func NewEtcd(ctx context.Context, client *clientv3.Client, prefix string, logger hclog.Logger) (*Etcd, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Etcd{client: client, keys: etcdKeys{prefix}, logger: logger.Named("store")}
	if err := s.init(ctx); err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	return s, nil
}

func (s *Etcd) init(ctx context.Context) error {
	return s.txn(ctx, func(tx *etcdTx) error {
		v, ok, err := tx.get(s.keys.version())
		if err != nil {
			return err
		}
		if !ok {
			tx.put(s.keys.version(), []byte(strconv.Itoa(SchemaVersion)))
			return nil
		}
		n, err := strconv.Atoi(string(v))
		switch {
		case err != nil || n < 1:
			return fmt.Errorf("schema version %q: %w", v, ErrCorrupt)
		case n > SchemaVersion:
			return fmt.Errorf("schema version %d, this sealroot reads up to %d: %w", n, SchemaVersion, ErrNewerSchema)
		case n < SchemaVersion:
			// The etcd store started at schema 3: the buckets the
			// bbolt migrations add are prefixes here, empty until used.
			tx.put(s.keys.version(), []byte(strconv.Itoa(SchemaVersion)))
		}
		return nil
	})
}

// Client returns the etcd client the store uses.
func (s *Etcd) Client() *clientv3.Client { return s.client }

// Close closes the client if OpenEtcd made it. Safe to call twice.
func (s *Etcd) Close() error {
	if !s.owned {
		return nil
	}
	s.owned = false
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd client: %w", err)
	}
	return nil
}

// ErrUnavailable is returned by the etcd store when the cluster does not
// answer: the member reached has no leader (the quorum is lost) or no
// answer came within etcdRequestTimeout. Nothing was written by the
// change that failed (an etcd transaction is all or nothing).
var ErrUnavailable = errors.New("state store unavailable")

// etcdRequestTimeout bounds one attempt of a transaction, or a read:
// without a quorum, a caller (an attestation in flight) is refused within
// it rather than left waiting.
const etcdRequestTimeout = 10 * time.Second

// unavailable wraps err in ErrUnavailable when it says the cluster did
// not answer (and ctx, the caller's, is not why).
func unavailable(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	for _, e := range []error{context.DeadlineExceeded, rpctypes.ErrNoLeader, rpctypes.ErrTimeout,
		rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrLeaderChanged,
		rpctypes.ErrTimeoutWaitAppliedIndex} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return err
}

// requestCtx bounds one attempt by etcdRequestTimeout and makes the
// member reached fail at once when it has no leader, instead of waiting
// for one.
func requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, etcdRequestTimeout)
	return clientv3.WithRequireLeader(ctx), cancel
}

// txn runs fn in an etcdTx and commits it, retrying on fresh reads while
// another writer got in first. fn may run more than once: it must only
// read through tx and buffer writes in it.
func (s *Etcd) txn(ctx context.Context, fn func(*etcdTx) error) error {
	for attempt := range maxTxnAttempts {
		if attempt > 0 {
			wait := time.NewTimer(rand.N(min(txnBackoff<<min(attempt, 16), maxTxnBackoff)))
			select {
			case <-ctx.Done():
				wait.Stop()
				return ctx.Err()
			case <-wait.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, err := s.attempt(ctx, fn)
		if err != nil {
			return unavailable(ctx, err)
		}
		if ok {
			return nil
		}
	}
	return ErrConflict
}

// attempt runs fn once and commits; ok is false when a read changed.
func (s *Etcd) attempt(ctx context.Context, fn func(*etcdTx) error) (ok bool, err error) {
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	tx := newEtcdTx(rctx, s.client.KV)
	if err := fn(tx); err != nil {
		return false, err
	}
	return tx.commit()
}

// view runs fn on reads at one revision; nothing is written.
func (s *Etcd) view(ctx context.Context, fn func(*etcdTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	return unavailable(ctx, fn(newEtcdTx(rctx, s.client.KV)))
}
