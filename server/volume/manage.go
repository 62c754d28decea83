package volume

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"

	"github.com/sealroot/sealroot/server/volume/cow"
)

// Create makes a machine's volume from the base with the given hex sha256
// digest and returns it open.
func (m *Manager) Create(ctx context.Context, machineID, baseDigest string) (*Volume, error) {
	if !namePattern.MatchString(machineID) {
		return nil, fmt.Errorf("volume: machine %q: %w", machineID, ErrBadName)
	}
	if _, err := m.Meta(machineID); err == nil {
		return nil, fmt.Errorf("volume: machine %s: %w", machineID, ErrExists)
	}
	if err := m.claim(machineID); err != nil {
		return nil, err
	}
	dir := m.machineDir(machineID)
	err := os.MkdirAll(filepath.Join(dir, "snapshots"), 0o700)
	var meta *Meta
	if err == nil {
		meta, err = m.makeDisk(ctx, dir, baseDigest, "")
	}
	if err == nil {
		err = writeJSONAtomic(filepath.Join(dir, "volume.json"), meta)
	}
	m.release(machineID)
	if err != nil {
		return nil, err
	}
	m.log.Info("created volume", "machine", machineID, "base", baseDigest, "backend", meta.Backend)
	return m.Open(machineID, baseDigest)
}

// makeDisk writes a fresh disk for base into dir, replacing any. backend
// "" means choose: reflink if the filesystem can.
func (m *Manager) makeDisk(ctx context.Context, dir, baseDigest string, backend Backend) (*Meta, error) {
	base, digest, size, err := m.base(baseDigest)
	if err != nil {
		return nil, err
	}
	meta := &Meta{Base: baseDigest, Size: size, Created: time.Now().UTC()}
	tmp := filepath.Join(dir, "disk.tmp")
	defer os.Remove(tmp)
	if backend != BackendCOW && !m.noReflink {
		err = cloneFile(tmp, base)
		if err == nil {
			meta.Backend = BackendReflink
		} else if !errors.Is(err, errNoReflink) || backend == BackendReflink {
			return nil, err
		}
	}
	if meta.Backend == "" {
		meta.Backend = BackendCOW
		if err := createCOW(tmp, base, size, digest); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, filepath.Join(dir, diskName(meta.Backend))); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	return meta, atomicfile.SyncDir(dir)
}

func createCOW(path, base string, size int64, digest [32]byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	o, err := cow.Create(cow.OSFile{File: f}, nil, size, digest)
	if err != nil {
		f.Close()
		return err
	}
	return o.Close()
}

// base resolves a digest to the base file, its raw digest and size.
func (m *Manager) base(digest string) (string, [32]byte, int64, error) {
	var raw [32]byte
	if n, err := hex.Decode(raw[:], []byte(digest)); err != nil || n != 32 || strings.ToLower(digest) != digest {
		return "", raw, 0, fmt.Errorf("volume: base digest %q: %w", digest, ErrBadName)
	}
	p, err := m.bases.BasePath(digest)
	if err != nil {
		return "", raw, 0, fmt.Errorf("volume: base: %w", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", raw, 0, fmt.Errorf("volume: base: %w", err)
	}
	return p, raw, fi.Size(), nil
}

// Open opens a machine's volume, which must have been made from the base
// baseDigest: anything else fails with ErrBaseMismatch naming both.
func (m *Manager) Open(machineID, baseDigest string) (*Volume, error) {
	meta, err := m.Meta(machineID)
	if err != nil {
		return nil, err
	}
	if meta.Base != baseDigest {
		return nil, fmt.Errorf("volume: machine %s was made from base sha256:%s, not sha256:%s: %w",
			machineID, meta.Base, baseDigest, ErrBaseMismatch)
	}
	base, digest, size, err := m.base(meta.Base)
	if err != nil {
		return nil, err
	}
	if size != meta.Size {
		return nil, fmt.Errorf("volume: machine %s: base sha256:%s is %d bytes, recorded %d: %w",
			machineID, meta.Base, size, meta.Size, ErrBaseMismatch)
	}
	if err := m.claim(machineID); err != nil {
		return nil, err
	}
	dev, err := openDisk(filepath.Join(m.machineDir(machineID), diskName(meta.Backend)), meta, base, digest)
	if err != nil {
		m.release(machineID)
		return nil, fmt.Errorf("volume: machine %s: %w", machineID, err)
	}
	v := &Volume{blockDev: dev, MachineID: machineID, Base: meta.Base, Backend: meta.Backend, m: m}
	m.mu.Lock()
	m.open[machineID] = v
	m.mu.Unlock()
	return v, nil
}

func openDisk(path string, meta *Meta, base string, digest [32]byte) (blockDev, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if meta.Backend == BackendReflink {
		return &rawDisk{f: f, size: meta.Size}, nil
	}
	b, err := os.Open(base)
	if err != nil {
		f.Close()
		return nil, err
	}
	o, err := cow.Open(cow.OSFile{File: f}, b, digest)
	if err != nil {
		f.Close()
		b.Close()
		return nil, err
	}
	return &cowDisk{Overlay: o, base: b}, nil
}

// cowDisk closes the base with the overlay.
type cowDisk struct {
	*cow.Overlay
	base *os.File
}

func (d *cowDisk) Close() error { return errors.Join(d.Overlay.Close(), d.base.Close()) }

// Reset puts a closed volume back to its base.
func (m *Manager) Reset(ctx context.Context, machineID string) error {
	meta, err := m.Meta(machineID)
	if err != nil {
		return err
	}
	if err := m.claim(machineID); err != nil {
		return err
	}
	defer m.release(machineID)
	if _, err := m.makeDisk(ctx, m.machineDir(machineID), meta.Base, meta.Backend); err != nil {
		return err
	}
	m.log.Info("reset volume", "machine", machineID, "base", meta.Base)
	return nil
}

// Snapshot saves a closed volume's current content under name.
func (m *Manager) Snapshot(machineID, name string) error {
	return m.copyDisk(machineID, name, true)
}

// Rollback replaces a closed volume's content with snapshot name.
func (m *Manager) Rollback(machineID, name string) error {
	return m.copyDisk(machineID, name, false)
}

func (m *Manager) copyDisk(machineID, name string, save bool) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("volume: snapshot %q: %w", name, ErrBadName)
	}
	meta, err := m.Meta(machineID)
	if err != nil {
		return err
	}
	if err := m.claim(machineID); err != nil {
		return err
	}
	defer m.release(machineID)
	dir := m.machineDir(machineID)
	disk := filepath.Join(dir, diskName(meta.Backend))
	snap := filepath.Join(dir, "snapshots", name+filepath.Ext(disk))
	src, dst := disk, snap
	if !save {
		src, dst = snap, disk
	}
	_, err = os.Stat(snap)
	switch {
	case save && err == nil:
		return fmt.Errorf("volume: snapshot %s of %s: %w", name, machineID, ErrExists)
	case !save && err != nil:
		return fmt.Errorf("volume: snapshot %s of %s: %w", name, machineID, ErrNotFound)
	}
	base := meta.Base
	if !save {
		if base, err = m.snapshotBase(machineID, name, meta.Base); err != nil {
			return err
		}
	}
	tmp := dst + ".tmp"
	if meta.Backend == BackendReflink {
		err = cloneFile(tmp, src)
	} else {
		err = copyCOW(tmp, src)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("volume: snapshot %s of %s: %w", name, machineID, err)
	}
	if save {
		err = writeJSONAtomic(m.snapMetaPath(machineID, name), snapMeta{Base: meta.Base, Created: time.Now().UTC()})
	} else if base != meta.Base {
		// Back to the base the snapshot was made on (before an upgrade).
		_, _, size, berr := m.base(base)
		meta.Base, meta.Size = base, size
		err = errors.Join(berr, writeJSONAtomic(filepath.Join(dir, "volume.json"), meta))
	}
	if err != nil {
		return err
	}
	m.log.Info("volume snapshot", "machine", machineID, "snapshot", name, "save", save, "base", base)
	return atomicfile.SyncDir(filepath.Dir(dst))
}

// Snapshots lists a machine's snapshot names, sorted.
func (m *Manager) Snapshots(machineID string) ([]string, error) {
	if _, err := m.Meta(machineID); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(m.machineDir(machineID), "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); !strings.HasSuffix(n, ".tmp") && !strings.HasSuffix(n, ".json") {
			out = append(out, strings.TrimSuffix(n, filepath.Ext(n)))
		}
	}
	sort.Strings(out)
	return out, nil
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	return nil
}
