package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Roots holds machines' roots still while a backup copies them; the
// server's root registry implements it (roots.Service.Hold).
type Roots interface {
	// Hold keeps the machine's root from being used or changed until
	// release is called. It fails, changing nothing, while the machine
	// is using its root.
	Hold(ctx context.Context, machineID string) (release func(), err error)
	// Bases returns the digests of the bases the roots are made on.
	Bases() (map[string]bool, error)
}

// Skipped is a machine whose roots a backup left out, and why.
type Skipped struct {
	Machine string `json:"machine"`
	Reason  string `json:"reason"`
}

// rootData reports whether rel (slash separated, in the state directory)
// is a machine's written data: a volume's disk or snapshot disks, an NFS
// upper or a snapshot's upper. A backup holds them only with roots.
func rootData(rel string) bool {
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) >= 4 && parts[0] == "volumes" && parts[1] == "machines":
		return !strings.HasSuffix(rel, ".json")
	case len(parts) >= 4 && parts[0] == "nfs" && parts[1] == "roots":
		return parts[3] == "upper" || (len(parts) >= 6 && parts[3] == "snapshots" && parts[5] == "upper")
	}
	return false
}

// baseData reports whether rel is a base image or its unpacked tree.
func baseData(rel string) bool {
	parts := strings.Split(rel, "/")
	return len(parts) >= 3 && parts[0] == "images" && (parts[1] == "bases" || parts[1] == "trees") &&
		strings.HasPrefix(parts[2], "sha256-")
}

// treeDev reports whether rel may be a device node in a restore: any
// under an image tree's dev/, else only overlayfs whiteouts (char 0:0).
func treeDev(rel string, h *tar.Header) bool {
	parts := strings.Split(rel, "/")
	if len(parts) >= 5 && parts[1] == "trees" && parts[3] == "dev" {
		return true
	}
	return h.Typeflag == tar.TypeChar && h.Devmajor == 0 && h.Devminor == 0
}

// machineDirs lists the machines that have roots in stateDir.
func machineDirs(stateDir string) []string {
	var ids []string
	for _, d := range []string{"volumes/machines", "nfs/roots"} {
		ents, _ := os.ReadDir(filepath.Join(stateDir, filepath.FromSlash(d)))
		for _, e := range ents {
			if e.IsDir() && !slices.Contains(ids, e.Name()) {
				ids = append(ids, e.Name())
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// writeRoots adds every machine's roots that roots can hold, each held
// while it is copied, then the bases they are made on.
func writeRoots(ctx context.Context, tw *tar.Writer, stateDir string, roots Roots, m *Manifest) error {
	for _, id := range machineDirs(stateDir) {
		release, err := roots.Hold(ctx, id)
		if err != nil {
			m.Skipped = append(m.Skipped, Skipped{Machine: id, Reason: err.Error()})
			continue
		}
		err = errors.Join(
			writeTree(tw, stateDir, "volumes/machines/"+id, rootData),
			writeTree(tw, stateDir, "nfs/roots/"+id, rootData))
		release()
		if err != nil {
			return err
		}
		m.Roots = append(m.Roots, id)
	}
	bases, err := roots.Bases()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	for d := range bases {
		m.Bases = append(m.Bases, d)
	}
	slices.Sort(m.Bases)
	for _, d := range m.Bases {
		err := errors.Join(
			writeTree(tw, stateDir, "images/bases/sha256-"+d+".img", baseData),
			writeTree(tw, stateDir, "images/trees/sha256-"+d, baseData))
		if err != nil {
			return err
		}
	}
	return nil
}

// writeTree adds rel and everything under it that want accepts; a
// missing rel adds nothing.
func writeTree(tw *tar.Writer, stateDir, rel string, want func(string) bool) error {
	top := filepath.Join(stateDir, filepath.FromSlash(rel))
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == top {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(stateDir, p)
		r = filepath.ToSlash(r)
		if !want(r) {
			return nil
		}
		return writeEntry(tw, r, p)
	})
	if err != nil {
		return fmt.Errorf("backup: %s: %w", rel, err)
	}
	return nil
}

// writeEntry adds the file at p as name with its type, mode, owner,
// times and extended attributes; a regular file's data only (holes stay
// holes, see writeSparse). Sockets are left out.
func writeEntry(tw *tar.Writer, name, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil
	}
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name, h.Uname, h.Gname, h.Format = name, "", "", tar.FormatPAX
	if fi.IsDir() {
		h.Name += "/"
	}
	h.PAXRecords = map[string]string{}
	if err := readXattrs(p, h.PAXRecords); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return tw.WriteHeader(h)
	}
	return writeSparse(tw, h, p)
}

// readXattrs adds p's extended attributes (trusted.overlay.* of an
// overlay upper among them: the backup runs as root) as
// SCHILY.xattr.NAME records.
func readXattrs(p string, into map[string]string) error {
	sz, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || sz == 0 {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return &os.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return err
		}
		into["SCHILY.xattr."+name] = string(v)
	}
	return nil
}

func getXattr(p, name string) ([]byte, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
	}
	v := make([]byte, sz)
	if sz, err = unix.Lgetxattr(p, name, v); err != nil {
		return nil, &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
	}
	return v[:sz], nil
}
