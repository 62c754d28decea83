package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// snapMeta is snapshots/NAME.json: the base a snapshot was made on. A
// snapshot without one (made before rebasing existed) is on the volume's
// base.
type snapMeta struct {
	Base    string    `json:"base"`
	Created time.Time `json:"created"`
}

func (m *Manager) snapMetaPath(machineID, name string) string {
	return filepath.Join(m.machineDir(machineID), "snapshots", name+".json")
}

// snapshotBase returns the base snapshot name of the machine was made on,
// def when it has no record.
func (m *Manager) snapshotBase(machineID, name, def string) (string, error) {
	b, err := os.ReadFile(m.snapMetaPath(machineID, name))
	if errors.Is(err, os.ErrNotExist) {
		return def, nil
	}
	if err != nil {
		return "", fmt.Errorf("volume: snapshot %s of %s: %w", name, machineID, err)
	}
	var sm snapMeta
	if err := json.Unmarshal(b, &sm); err != nil || sm.Base == "" {
		return "", fmt.Errorf("volume: snapshot %s of %s: bad record: %v", name, machineID, err)
	}
	return sm.Base, nil
}

// Rebase moves a closed volume onto another base: the volume starts
// afresh from baseDigest, keeping its snapshots. When keepAs is not "",
// the current content is first saved as snapshot keepAs (with its base,
// so that Rollback to it returns to the old base too).
func (m *Manager) Rebase(ctx context.Context, machineID, baseDigest, keepAs string) error {
	meta, err := m.Meta(machineID)
	if err != nil {
		return err
	}
	if _, _, _, err := m.base(baseDigest); err != nil {
		return err
	}
	if keepAs != "" {
		if err := m.Snapshot(machineID, keepAs); err != nil {
			return err
		}
	}
	if err := m.claim(machineID); err != nil {
		return err
	}
	defer m.release(machineID)
	dir := m.machineDir(machineID)
	fresh, err := m.makeDisk(ctx, dir, baseDigest, meta.Backend)
	if err != nil {
		return err
	}
	if err := writeJSONAtomic(filepath.Join(dir, "volume.json"), fresh); err != nil {
		return err
	}
	m.log.Info("rebased volume", "machine", machineID, "from", meta.Base, "to", baseDigest, "kept_as", keepAs)
	return nil
}

// DeleteSnapshot removes snapshot name of the machine's volume.
func (m *Manager) DeleteSnapshot(machineID, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("volume: snapshot %q: %w", name, ErrBadName)
	}
	meta, err := m.Meta(machineID)
	if err != nil {
		return err
	}
	snap := filepath.Join(m.machineDir(machineID), "snapshots", name+filepath.Ext(diskName(meta.Backend)))
	if _, err := os.Stat(snap); err != nil {
		return fmt.Errorf("volume: snapshot %s of %s: %w", name, machineID, ErrNotFound)
	}
	if err := errors.Join(os.Remove(snap), removeIfExists(m.snapMetaPath(machineID, name))); err != nil {
		return fmt.Errorf("volume: delete snapshot %s of %s: %w", name, machineID, err)
	}
	m.log.Info("deleted snapshot", "machine", machineID, "snapshot", name)
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Snapshot describes one snapshot of a volume.
type Snapshot struct {
	Name    string
	Base    string // digest of the base it was made on
	Created time.Time
	Size    int64 // bytes the snapshot file takes on disk
}

// SnapshotInfo lists a machine's snapshots with their bases, sorted by
// name.
func (m *Manager) SnapshotInfo(machineID string) ([]Snapshot, error) {
	meta, err := m.Meta(machineID)
	if err != nil {
		return nil, err
	}
	names, err := m.Snapshots(machineID)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, 0, len(names))
	for _, n := range names {
		s := Snapshot{Name: n}
		if s.Base, err = m.snapshotBase(machineID, n, meta.Base); err != nil {
			return nil, err
		}
		fi, err := os.Stat(filepath.Join(m.machineDir(machineID), "snapshots", n+filepath.Ext(diskName(meta.Backend))))
		if err == nil {
			s.Created, s.Size = fi.ModTime().UTC(), allocated(fi)
		}
		out = append(out, s)
	}
	return out, nil
}

// snapshotBases adds the bases of the machine's snapshots to bases.
func (m *Manager) snapshotBases(machineID string, bases map[string]bool) {
	ms, _ := filepath.Glob(filepath.Join(m.machineDir(machineID), "snapshots", "*.json"))
	for _, p := range ms {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		if b, err := m.snapshotBase(machineID, name, ""); err == nil && b != "" {
			bases[b] = true
		}
	}
}

// allocated is the bytes fi takes on disk (sparse files take less than
// their length).
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
