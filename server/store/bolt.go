package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors of the bbolt implementation, for errors.Is.
var (
	// ErrExists is returned by CreateMachine when the ID is taken.
	ErrExists = errors.New("machine already exists")
	// ErrNameTaken is returned when a machine name is used by another machine.
	ErrNameTaken = errors.New("machine name already in use")
	// ErrCorrupt is returned when a stored record cannot be decoded.
	ErrCorrupt = errors.New("corrupt state record")
	// ErrLocked is returned by Open when another process holds the database.
	ErrLocked = errors.New("state database is locked by another sealroot")
	// ErrNewerSchema is returned by Open for a database written by a newer
	// sealroot, whose records this one may not understand.
	ErrNewerSchema = errors.New("state database written by a newer sealroot")
)

// Bucket layout (schema version 6):
//
//	meta     "version" -> "6"
//	machines <id>      -> JSON Machine
//	seen     <id>      -> JSON seen: the fields each boot changes, which
//	                      override those in the machine record
//	history  <id>      -> the last MaxHistory BootAttempts, oldest first,
//	                      in a compact binary form (since 6; history.go;
//	                      in 5 a bucket: <8-byte sequence> -> JSON)
//	names    <name>    -> <id>          (unique index; empty names are not indexed)
//	secrets  <id>      -> bucket: <secret name> -> ciphertext
//	groups   <name>    -> JSON Group
//	dhcp_leases        <IPv4>  -> JSON DHCPLease        (since 3)
//	dhcp_reservations  <MAC>   -> JSON DHCPReservation  (since 3)
//	boot_logs          <id>    -> JSON []BootLog        (since 4)
//
// Open migrates an older schema forward in one transaction (migrations)
// and refuses a newer one with ErrNewerSchema.
var (
	bucketMeta     = []byte("meta")
	bucketMachines = []byte("machines")
	bucketNames    = []byte("names")
	bucketSecrets  = []byte("secrets")
	bucketGroups   = []byte("groups")
	bucketSeen     = []byte("seen")
	bucketHistory  = []byte("history")
	bucketLeases   = []byte("dhcp_leases")
	bucketReserved = []byte("dhcp_reservations")
	bucketBootLogs = []byte("boot_logs")
	keyVersion     = []byte("version")
)

// SchemaVersion is the version of the bucket layout this sealroot writes.
const SchemaVersion = 6

// migrations[v] moves a schema v database to v+1. Buckets of every
// version are created by init first; a migration moves records.
var migrations = map[int]func(*DB, *bolt.Tx) error{
	1: func(*DB, *bolt.Tx) error { return nil }, // the seen bucket, empty: valid
	2: func(_ *DB, tx *bolt.Tx) error { // DHCP leases and reservations
		for _, b := range [][]byte{bucketLeases, bucketReserved} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	3: func(_ *DB, tx *bolt.Tx) error { // agents' boot logs
		_, err := tx.CreateBucketIfNotExists(bucketBootLogs)
		return err
	},
	4: (*DB).migrateHistory,       // history out of the seen records
	5: (*DB).migrateHistoryValues, // a value per machine, not a bucket
}

// lockTimeout is how long Open waits for the file lock.
const lockTimeout = 2 * time.Second

// maxIDLen bounds machine IDs (a hex SHA-256 is 64).
const maxIDLen = 128

// DB is the embedded bbolt Store. It is safe for concurrent use. The zero
// value is not usable; call Open.
type DB struct {
	bolt   *bolt.DB
	logger hclog.Logger
	cache  *machineCache
	seen   seenCache
	// history caches decoded boot attempts (history.go); commits groups
	// concurrent machine updates into shared transactions.
	history *historyCache
	commits *groupCommit
	feed    changeFeed // machine changes, told after commit (bolt_watch.go)
}

var _ Store = (*DB)(nil)

// Open opens or creates the state database at path (mode 0600). It fails
// with ErrLocked when another process has it open.
func Open(path string, logger hclog.Logger) (*DB, error) {
	return open(path, logger, lockTimeout)
}

func open(path string, logger hclog.Logger, timeout time.Duration) (*DB, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("store")
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		// The freelist is rebuilt at open by walking the tree instead of
		// being rewritten at every commit, as etcd does: with 10,000
		// machines the freelist write dominated each boot's commit
		// (attestation store rate 784/s against 1,495/s without it,
		// BenchmarkAttestationStore). Files stay readable either way.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("state database is accessible by other users", "path", path, "mode", fi.Mode().Perm().String())
	}
	db := &DB{bolt: b, logger: logger, cache: newMachineCache(), history: newHistoryCache(), commits: &groupCommit{db: b}}
	if err := db.init(); err != nil {
		b.Close()
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return db, nil
}

// init creates the buckets of a new database, or migrates an older one
// forward, in one transaction.
func (db *DB) init() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketMachines, bucketNames, bucketSecrets, bucketGroups, bucketSeen, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := SchemaVersion
		if raw := meta.Get(keyVersion); raw == nil {
			v = 1 // new: create everything through the migrations
		} else if n, err := strconv.Atoi(string(raw)); err != nil || n < 1 {
			return fmt.Errorf("schema version %q: %w", raw, ErrCorrupt)
		} else {
			v = n
		}
		if v > SchemaVersion {
			return fmt.Errorf("schema version %d, this sealroot reads up to %d: upgrade sealroot (or restore a backup made by this version): %w",
				v, SchemaVersion, ErrNewerSchema)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](db, tx); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
			}
			db.logger.Info("migrated state database", "from", v, "to", v+1)
		}
		return meta.Put(keyVersion, []byte(strconv.Itoa(SchemaVersion)))
	})
}

// Close closes the database. It is safe to call more than once.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close state database: %w", err)
	}
	return nil
}

// Check runs bbolt's consistency check over the whole file and returns every
// problem found, joined.
func (db *DB) Check() error {
	var errs []error
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check state database: %w", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("check state database: %w", errors.Join(errs...))
	}
	return nil
}

// view runs fn in a read transaction after checking ctx.
func (db *DB) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.View(fn)
}

// update runs fn in its own write transaction after checking ctx.
func (db *DB) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.Update(fn)
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("machine id of %d bytes: %w", len(id), ErrNotFound)
	}
	return nil
}
