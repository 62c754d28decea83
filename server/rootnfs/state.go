package rootnfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// state is a machine's NFS root, kept in Dir/<id>/state.json.
type state struct {
	MachineID string `json:"machine_id"`
	// Base is the digest of the base the upper was made on; "" until
	// the first persistent boot and after a reset.
	Base string `json:"base,omitempty"`
	// Lower is the digest of the tree mounted at root now.
	Lower    string `json:"lower,omitempty"`
	Volatile bool   `json:"volatile,omitempty"`
	// ExportID is ganesha's Export_Id, fixed for the machine's lifetime.
	ExportID uint16     `json:"export_id"`
	Client   netip.Addr `json:"client"`
	Exported bool       `json:"exported"`
	// Holder is the machine a user's root is exported to (MachineID is
	// then the root's key, roots.UserRootKey); empty for a machine's own
	// root. User and Exchange name the user and the exchange that
	// released the holder's boot (roots.Request).
	Holder   string `json:"holder,omitempty"`
	User     string `json:"user,omitempty"`
	Exchange string `json:"exchange,omitempty"`
}

// machine is the machine that mounts st's root: its holder for a user's
// root, else the root's own machine.
func (st *state) machine() string {
	if st.Holder != "" {
		return st.Holder
	}
	return st.MachineID
}

var (
	idPattern   = regexp.MustCompile(`^[0-9a-f]{16,64}$`)
	snapPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// A machine's directory: Dir/<id>/{upper,work,root,snapshots/<name>,state.json}.
func (p *Provider) dir(id string) string   { return filepath.Join(p.cfg.Dir, id) }
func (p *Provider) upper(id string) string { return filepath.Join(p.cfg.Dir, id, "upper") }
func (p *Provider) work(id string) string  { return filepath.Join(p.cfg.Dir, id, "work") }
func (p *Provider) root(id string) string  { return filepath.Join(p.cfg.Dir, id, "root") }
func (p *Provider) snapshot(id, name string) string {
	return filepath.Join(p.cfg.Dir, id, "snapshots", name)
}

func (p *Provider) load(id string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(p.dir(id), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("nfs root of %.12s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("nfs root state: %w", err)
	}
	st := &state{}
	if err := json.Unmarshal(data, st); err != nil || st.MachineID != id {
		return nil, fmt.Errorf("nfs root state of %.12s is damaged: %v", id, err)
	}
	return st, nil
}

func (p *Provider) save(st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := p.dir(st.MachineID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("nfs root state: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		return fmt.Errorf("nfs root state: %w", err)
	}
	return nil
}

// states reads every machine's state.
func (p *Provider) states() ([]*state, error) {
	ents, err := os.ReadDir(p.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("nfs roots: %w", err)
	}
	var out []*state
	for _, e := range ents {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		st, err := p.load(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// freeExportID returns the lowest export ID no machine holds.
func (p *Provider) freeExportID() (uint16, error) {
	states, err := p.states()
	if err != nil {
		return 0, err
	}
	used := map[uint16]bool{}
	for _, st := range states {
		used[st.ExportID] = true
	}
	for id := uint16(1); id != 0; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, errors.New("nfs roots: no free export ID (65535 machines)")
}
