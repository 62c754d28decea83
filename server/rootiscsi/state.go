package rootiscsi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// recordSuffix names a machine's encrypted target record in StateDir.
const recordSuffix = ".target.age"

// maxRecord bounds a record file.
const maxRecord = 64 << 10

var idPattern = regexp.MustCompile(`^[0-9a-f]{16,128}$`)

func (p *Provider) persistent() bool { return p.cfg.StateDir != "" && p.cfg.Box != nil }

func (p *Provider) recordPath(id string) string {
	return filepath.Join(p.cfg.StateDir, id+recordSuffix)
}

// save writes rec encrypted, by write, fsync, rename, fsync of the dir.
func (p *Provider) save(rec *record) error {
	if !p.persistent() {
		return nil
	}
	if !idPattern.MatchString(rec.MachineID) {
		return fmt.Errorf("rootiscsi: machine ID %q is not hex", rec.MachineID)
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("rootiscsi: encode record: %w", err)
	}
	ct, err := p.cfg.Box.Encrypt(plain)
	clear(plain)
	if err != nil {
		return fmt.Errorf("rootiscsi: encrypt record: %w", err)
	}
	if err := os.MkdirAll(p.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("rootiscsi: %w", err)
	}
	if err := atomicfile.WriteFile(p.recordPath(rec.MachineID), ct, 0o600); err != nil {
		return fmt.Errorf("rootiscsi: save record: %w", err)
	}
	return nil
}

// remove deletes a machine's record, if any.
func (p *Provider) remove(id string) error {
	if !p.persistent() || !idPattern.MatchString(id) {
		return nil
	}
	if err := os.Remove(p.recordPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rootiscsi: remove record: %w", err)
	}
	return nil
}

// Restore brings back the targets recorded before a restart, with their
// credentials, so running machines log in again. A record that cannot be
// served (its volume is gone or made from another base, its transport is
// no longer configured) is logged and skipped. It returns the number of
// targets restored.
func (p *Provider) Restore(ctx context.Context) (int, error) {
	if !p.persistent() {
		return 0, nil
	}
	ents, err := os.ReadDir(p.cfg.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("rootiscsi: restore: %w", err)
	}
	n := 0
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), recordSuffix)
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		if err := p.restoreOne(ctx, id); err != nil {
			p.log.Error("cannot restore iscsi root", "machine", id, "error", err)
			continue
		}
		n++
	}
	return n, nil
}

func (p *Provider) restoreOne(ctx context.Context, id string) error {
	rec, err := p.load(id)
	if err != nil {
		return err
	}
	if rec.Tunnelled && p.cfg.Tunnelled == nil || !rec.Tunnelled && p.cfg.Plain == nil {
		return fmt.Errorf("tunnelled=%v: %w", rec.Tunnelled, ErrNoPortal)
	}
	if err := p.serve(ctx, rec, false); err != nil {
		return err
	}
	p.log.Info("iscsi root restored", "machine", id, "target", TargetIQN(id))
	return nil
}

func (p *Provider) load(id string) (*record, error) {
	f, err := os.Open(p.recordPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ct, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return nil, err
	}
	if len(ct) > maxRecord {
		return nil, fmt.Errorf("record over %d bytes", maxRecord)
	}
	plain, err := p.cfg.Box.Decrypt(ct)
	if err != nil {
		return nil, fmt.Errorf("decrypt record: %w", err)
	}
	defer clear(plain)
	var rec record
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	if rec.MachineID != id {
		return nil, fmt.Errorf("record names machine %q", rec.MachineID)
	}
	return &rec, nil
}
