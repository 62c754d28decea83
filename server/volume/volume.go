// Package volume manages each machine's writable copy of a base image:
// machines/<id>/ holds volume.json (the base digest it was made from, the
// backend), the disk, and snapshots/.
//
// # Backends
//
// On XFS and btrfs the disk is a reflink clone (FICLONE) of the base: made
// in constant time, sharing every unwritten extent. Elsewhere (ext4) it is
// a cow overlay (package cow) that reads unwritten chunks from the base.
// The backend is chosen at Create by trying FICLONE.
//
// # Safety
//
// A volume is tied to its base: Open refuses with ErrBaseMismatch when the
// base asked for is not the one recorded at Create, and a cow overlay also
// checks the digest in its own header. Reset, Snapshot, Rollback and
// Delete refuse with ErrBusy while the volume is open. Files are replaced
// by write, fsync, rename, fsync of the directory.
//
// # Concurrency
//
// A Manager is safe for concurrent use; a Volume too.
package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/volume/cow"
)

// Errors.
var (
	// ErrBaseMismatch means a volume was made from another base than the
	// one it is opened against. It is cow.ErrBaseMismatch.
	ErrBaseMismatch = cow.ErrBaseMismatch
	// ErrBusy means the volume is open.
	ErrBusy = errors.New("volume is open")
	// ErrNotFound means the machine has no volume, or no such snapshot.
	ErrNotFound = errors.New("volume not found")
	// ErrExists means the machine already has a volume or snapshot.
	ErrExists = errors.New("volume already exists")
	// ErrBadName means a machine ID, snapshot name or digest is malformed.
	ErrBadName = errors.New("invalid volume name")
)

// Backend names how a volume stores its writes.
type Backend string

// Backends.
const (
	BackendReflink Backend = "reflink" // FICLONE clone of the base
	BackendCOW     Backend = "cow"     // cow overlay over the base
)

// Bases finds base images by hex sha256; *image.Store implements it.
type Bases interface {
	BasePath(digest string) (string, error)
}

// Config configures a Manager.
type Config struct {
	Dir    string       // required: holds machines/
	Bases  Bases        // required
	Logger hclog.Logger // default: discard
	// NoReflink forces the cow backend (tests, or to save space on XFS
	// whose clones copy 128 KiB per first write by default).
	NoReflink bool
}

// Manager creates and opens machine volumes.
type Manager struct {
	dir       string
	bases     Bases
	log       hclog.Logger
	noReflink bool

	mu   sync.Mutex
	open map[string]*Volume // by machine ID; guarded by mu
}

// Meta is a volume's volume.json.
type Meta struct {
	Base    string    `json:"base"` // hex sha256 of the base image
	Backend Backend   `json:"backend"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// New returns a Manager over cfg.Dir/machines.
func New(cfg Config) (*Manager, error) {
	m := &Manager{dir: filepath.Join(cfg.Dir, "machines"), bases: cfg.Bases, log: cfg.Logger,
		noReflink: cfg.NoReflink, open: map[string]*Volume{}}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	m.log = m.log.Named("volume")
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	return m, nil
}

func (m *Manager) machineDir(id string) string { return filepath.Join(m.dir, id) }

func diskName(b Backend) string {
	if b == BackendCOW {
		return "disk.cow"
	}
	return "disk.img"
}

// Meta returns a machine's volume record.
func (m *Manager) Meta(machineID string) (*Meta, error) {
	if !namePattern.MatchString(machineID) {
		return nil, fmt.Errorf("volume: machine %q: %w", machineID, ErrBadName)
	}
	b, err := os.ReadFile(filepath.Join(m.machineDir(machineID), "volume.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("volume: machine %s: %w", machineID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	var meta Meta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("volume: machine %s: volume.json: %w", machineID, err)
	}
	return &meta, nil
}

// InUse reports whether some volume or snapshot was made from the base digest: pass
// it to image.Store.GC.
func (m *Manager) InUse(digest string) bool {
	ents, _ := os.ReadDir(m.dir)
	for _, e := range ents {
		if meta, err := m.Meta(e.Name()); err == nil && meta.Base == digest {
			return true
		}
		snaps := map[string]bool{}
		m.snapshotBases(e.Name(), snaps)
		if snaps[digest] {
			return true
		}
	}
	return false
}

// Bases returns the digests of the bases the volumes and their snapshots
// are made from.
func (m *Manager) Bases() (map[string]bool, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	bases := map[string]bool{}
	for _, e := range ents {
		if meta, err := m.Meta(e.Name()); err == nil {
			bases[meta.Base] = true
			m.snapshotBases(e.Name(), bases)
		}
	}
	return bases, nil
}

// Delete removes a machine's volume and snapshots.
func (m *Manager) Delete(machineID string) error {
	if _, err := m.Meta(machineID); err != nil {
		return err
	}
	if err := m.claim(machineID); err != nil {
		return err
	}
	defer m.release(machineID)
	if err := os.RemoveAll(m.machineDir(machineID)); err != nil {
		return fmt.Errorf("volume: delete %s: %w", machineID, err)
	}
	m.log.Info("deleted volume", "machine", machineID)
	return atomicfile.SyncDir(m.dir)
}

// claim marks a machine busy for a maintenance operation.
func (m *Manager) claim(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.open[id]; ok {
		return fmt.Errorf("volume: machine %s: %w", id, ErrBusy)
	}
	m.open[id] = nil
	return nil
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	delete(m.open, id)
	m.mu.Unlock()
}

// Hold keeps the machine's volume and snapshots closed and unchanged
// until release is called: Open, Reset, Snapshot, Rollback and Delete
// fail with ErrBusy meanwhile. It fails with ErrBusy while the volume is
// open. A machine without a volume is held too (none can be made).
func (m *Manager) Hold(machineID string) (release func(), err error) {
	if !namePattern.MatchString(machineID) {
		return nil, fmt.Errorf("volume: machine %q: %w", machineID, ErrBadName)
	}
	if err := m.claim(machineID); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { m.release(machineID) }) }, nil
}
