// Package backup writes and restores a sealroot server's state: a gzipped
// tar of the state directory's keys, configuration and records, with the
// database copied in one read transaction while the server runs, and,
// when asked, the machines' roots.
//
// # What a backup holds
//
//	MANIFEST.json                 what this backup holds (Manifest)
//	state.db                      the store (machines, groups, encrypted secrets, DHCP leases), consistent
//	secrets.age.key               the age identity that decrypts the secrets: THE BACKUP HOLDS KEYS
//	pki/...                       the sealroot CA and server certificate and their keys
//	audit.log                     the audit log up to the moment of the backup
//	images/index.json             image names and versions (not the bases)
//	volumes/<id>/volume.json, volumes/<id>/snapshots/*.json   volume records (not the disks)
//	iscsi/..., nfs/ganesha/..., nfs/roots/<id>/state.json, nfs/roots/<id>/snapshots/<n>/base
//	every other regular file of the state directory
//
// Not held without roots: base images (images/bases, images/trees:
// re-import them, the same content gives the same digest), volume disks
// and NFS uppers (the machines' written data). Never held: sockets, and
// image, volume or NFS root directories configured outside the state
// directory. Restore refuses to write into a non-empty directory.
//
// # Roots
//
// With Config.Roots the backup also holds every machine's roots that can
// be held still, and the bases they are made on:
//
//	volumes/machines/<id>/disk.*, snapshots/*       volume disks, sparse: holes stay holes
//	nfs/roots/<id>/upper/, snapshots/<n>/upper/     NFS uppers with owners, modes, times, whiteouts
//	                                                and extended attributes (trusted.overlay.*)
//	images/bases/sha256-<d>.img, images/trees/sha256-<d>/   the bases of those roots
//
// A sparse file's entry holds only its data segments, with their map in
// the PAX records SEALROOT.sparse.map and SEALROOT.sparse.size; extended
// attributes travel as SCHILY.xattr.NAME records; a restore leaves out
// trusted.overlay.origin (file handles of the old base's inodes, which
// would make the kernel refuse the upper over the restored base). Hard links inside a
// tree are stored, and restored, as separate files.
//
// Consistency: each machine's roots are copied while Roots.Hold holds
// them. The server's Hold refuses a root the machine is using (an iSCSI
// session logged in, an NFS export whose tunnel peer is active) or is
// booting (attesting, or its root handed out less than 2 minutes ago
// and not attached yet: roots.Service.Hold); such a machine is left out
// and listed in Manifest.Skipped with the reason. A boot that starts
// while its root is held waits for the copy to end: a backup never
// fails a boot.
// A root that is not in use is withdrawn for the copy (the machine gets it
// back by attesting at its next boot) and kept closed until the copy
// ends: a boot meanwhile waits in its release until then.
// So every root in the backup is the state the machine left it in when
// it last shut down, never a torn copy of a running file system.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Manifest describes a backup.
type Manifest struct {
	Created time.Time `json:"created"`
	// SchemaVersion is the store schema of state.db.
	SchemaVersion int `json:"schema_version"`
	// Files lists the state directory's files held, besides state.db.
	Files []string `json:"files"`
	// Excluded says what was left out.
	Excluded []string `json:"excluded"`
	// Roots lists the machines whose roots the backup holds.
	Roots []string `json:"roots,omitempty"`
	// Skipped lists the machines whose roots were left out, and why.
	Skipped []Skipped `json:"skipped,omitempty"`
	// Bases lists the digests of the bases held for the roots.
	Bases []string `json:"bases,omitempty"`
}

// DB writes a consistent copy of the store; *store.DB implements it.
type DB interface {
	WriteTo(w io.Writer) (int64, error)
}

// excluded is what a backup without roots does not hold, as documented
// above; excludedWithRoots what one with roots does not.
var (
	excluded = []string{
		"images/bases/, images/trees/, images/tmp/ (base images: re-import)",
		"volumes/machines/<id>/disk.*, volumes/machines/<id>/snapshots/*.img|*.cow (machines' written data: --with-roots)",
		"nfs/roots/<id>/upper, work, root, snapshots/<n>/upper (machines' written data: --with-roots)",
		"sockets and other non-regular files",
	}
	excludedWithRoots = []string{
		"images/bases/, images/trees/ of bases no root is made on (re-import them)",
		"roots of the machines listed as skipped",
		"nfs/roots/<id>/work, root (overlayfs work and mount directories)",
		"sockets, and directories configured outside the state directory",
	}
)

// dbCopyPrefix names the store's copy a backup stages in the state
// directory while it runs.
const dbCopyPrefix = ".backup-state.db-"

// include reports whether the state directory's file rel (slash
// separated) goes into a backup.
func include(rel string) bool {
	parts := strings.Split(rel, "/")
	switch {
	case rel == "state.db" || strings.HasPrefix(rel, "state.db"):
		return false // copied from a transaction
	case strings.HasPrefix(rel, dbCopyPrefix):
		return false // another backup's copy of it
	case parts[0] == "images":
		return rel == "images/index.json"
	case parts[0] == "volumes":
		return strings.HasSuffix(rel, ".json")
	case len(parts) >= 3 && parts[0] == "nfs" && parts[1] == "roots":
		return (len(parts) == 4 && parts[3] == "state.json") ||
			(len(parts) == 6 && parts[3] == "snapshots" && parts[5] == "base")
	}
	return true
}

// Config says what Write backs up.
type Config struct {
	StateDir      string // required
	DB            DB     // required: the store, copied in one transaction
	SchemaVersion int    // the store's schema
	Now           time.Time
	// Roots, when set, adds the machines' roots and their bases.
	Roots Roots
}

// Write writes a backup of cfg.StateDir to w, copying the store from
// cfg.DB.
func Write(ctx context.Context, w io.Writer, cfg Config) (*Manifest, error) {
	stateDir, db, now := cfg.StateDir, cfg.DB, cfg.Now
	var files []string
	err := filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(stateDir, p)
		rel = filepath.ToSlash(rel)
		if d.Type().IsRegular() && include(rel) {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	m := &Manifest{Created: now.UTC(), SchemaVersion: cfg.SchemaVersion, Files: files, Excluded: excluded}
	if cfg.Roots != nil {
		m.Excluded = excludedWithRoots
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	// The store's copy is staged beside it (not in /tmp), as the store
	// itself is; everything else streams to w.
	f, err := os.CreateTemp(stateDir, dbCopyPrefix)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := db.WriteTo(f); err != nil {
		return nil, fmt.Errorf("backup: copy store: %w", err)
	}
	if err := writeFile(tw, "state.db", f.Name()); err != nil {
		return nil, err
	}
	for _, rel := range files {
		if err := writeFile(tw, rel, filepath.Join(stateDir, filepath.FromSlash(rel))); err != nil {
			return nil, err
		}
	}
	if cfg.Roots != nil {
		if err := writeRoots(ctx, tw, stateDir, cfg.Roots, m); err != nil {
			return nil, err
		}
	}
	// The manifest goes last: only then is it known which roots were
	// held. Restore reads it wherever it is.
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeBytes(tw, "MANIFEST.json", mb, now); err != nil {
		return nil, err
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

func writeBytes(tw *tar.Writer, name string, b []byte, now time.Time) error {
	h := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err := tw.Write(b)
	return err
}

// writeFile adds the file at p as name. A file that grows meanwhile (the
// audit log) is cut at the size it had when opened.
func writeFile(tw *tar.Writer, name, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	h := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	return nil
}

// ErrNotEmpty means Restore was given a directory that holds files.
var ErrNotEmpty = errors.New("restore target is not empty")

// Restore unpacks the backup read from r into dir, which must be absent
// or empty. Only regular files with local names are written, owner-only.
func Restore(r io.Reader, dir string) (*Manifest, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("restore into %s: %w", dir, ErrNotEmpty)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer root.Close()
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("restore: not a sealroot backup: %w", err)
	}
	tr := tar.NewReader(gz)
	trees := &treeRestorer{root: root}
	var m *Manifest
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !filepath.IsLocal(name) || strings.Contains(name, `\`) {
			return nil, fmt.Errorf("restore: entry %q: not a local name", h.Name)
		}
		if rootData(name) || baseData(name) {
			if err := trees.restore(h, tr); err != nil {
				return nil, fmt.Errorf("restore %s: %w", name, err)
			}
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("restore: entry %q: not a regular file", h.Name)
		}
		if h.Name == "MANIFEST.json" {
			m = &Manifest{}
			if err := json.NewDecoder(tr).Decode(m); err != nil {
				return nil, fmt.Errorf("restore: manifest: %w", err)
			}
			continue
		}
		if err := restoreFile(root, h.Name, tr); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, errors.New("restore: not a sealroot backup (no MANIFEST.json)")
	}
	if err := trees.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

func restoreFile(root *os.Root, name string, r io.Reader) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	return nil
}

// ReadManifest reads the manifest of the backup read from r.
func ReadManifest(r io.Reader) (*Manifest, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("backup: not a sealroot backup: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("backup: not a sealroot backup (no MANIFEST.json)")
		}
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		if h.Name == "MANIFEST.json" {
			m := &Manifest{}
			if err := json.NewDecoder(tr).Decode(m); err != nil {
				return nil, fmt.Errorf("backup: manifest: %w", err)
			}
			return m, nil
		}
	}
}
