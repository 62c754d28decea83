package wire

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// File is one configuration file the agent writes into the machine's root
// before switch_root, at every boot (Payload.Files). Its Content is final:
// the server renders templates before sealing. Secrets do not travel as
// Files; they go in Payload.Secrets and land in a tmpfs.
type File struct {
	// Path is absolute and clean, inside the new root (see CheckFilePath).
	Path string `json:"path"`
	// Mode holds the permission bits (at most 07777).
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	// Content is the file's bytes, at most MaxFileSize.
	Content []byte `json:"content"`
}

// Limits on files, checked by the server when a file is set and at
// release, and again by the agent on the decrypted payload.
const (
	MaxFileSize   = 64 << 10 // one file's content
	MaxFilesTotal = 1 << 20  // all files of one release (or of one owner)
	MaxFiles      = 256      // files in one release (or of one owner)
	MaxPathLen    = 1024
	MaxFileMode   = 0o7777
)

// ErrBadFile marks a file refused by CheckFile or CheckFiles.
var ErrBadFile = errors.New("bad file")

// reservedDirs are hidden or replaced at boot (the agent moves /dev,
// /proc, /sys and /run over the new root), so a file there would vanish.
var reservedDirs = []string{"/dev", "/proc", "/sys", "/run"}

// CheckFilePath reports why p cannot name a file in a machine's root: it
// must be absolute and clean ("/etc/motd", not "etc/motd", "/etc/../x" or
// "/etc/"), not "/", without NUL, not under /dev, /proc, /sys or /run.
func CheckFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path: %w", ErrBadFile)
	case len(p) > MaxPathLen:
		return fmt.Errorf("path of %d bytes, at most %d: %w", len(p), MaxPathLen, ErrBadFile)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("path %q contains NUL: %w", p, ErrBadFile)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute: %w", p, ErrBadFile)
	case p == "/":
		return fmt.Errorf("path %q names the root directory: %w", p, ErrBadFile)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (no \"..\", \".\", \"//\" or trailing \"/\"): %w", p, ErrBadFile)
	}
	for _, el := range strings.Split(p[1:], "/") {
		if len(el) > 255 {
			return fmt.Errorf("path %q has a component over 255 bytes: %w", p, ErrBadFile)
		}
	}
	for _, d := range reservedDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return fmt.Errorf("path %q is under %s, which the booted system mounts over: %w", p, d, ErrBadFile)
		}
	}
	return nil
}

// CheckFile reports why f cannot be written into a machine's root.
func CheckFile(f *File) error {
	if err := CheckFilePath(f.Path); err != nil {
		return err
	}
	if f.Mode > MaxFileMode {
		return fmt.Errorf("file %s: mode %#o has bits beyond %#o: %w", f.Path, f.Mode, MaxFileMode, ErrBadFile)
	}
	if f.UID == ^uint32(0) || f.GID == ^uint32(0) {
		return fmt.Errorf("file %s: owner -1 is not an owner: %w", f.Path, ErrBadFile)
	}
	if len(f.Content) > MaxFileSize {
		return fmt.Errorf("file %s: %d bytes, at most %d: %w", f.Path, len(f.Content), MaxFileSize, ErrBadFile)
	}
	return nil
}

// CheckFiles checks every file, that no path repeats or lies under
// another file's path, and the count and total size limits.
func CheckFiles(files []File) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("%d files, at most %d: %w", len(files), MaxFiles, ErrBadFile)
	}
	total := 0
	paths := make(map[string]bool, len(files))
	for i := range files {
		f := &files[i]
		if err := CheckFile(f); err != nil {
			return err
		}
		if paths[f.Path] {
			return fmt.Errorf("file %s listed twice: %w", f.Path, ErrBadFile)
		}
		paths[f.Path] = true
		total += len(f.Content)
	}
	if total > MaxFilesTotal {
		return fmt.Errorf("files of %d bytes in all, at most %d: %w", total, MaxFilesTotal, ErrBadFile)
	}
	for p := range paths {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if paths[d] {
				return fmt.Errorf("file %s lies under file %s: %w", p, d, ErrBadFile)
			}
		}
	}
	return nil
}

// IsRootSecret reports whether name is one of the root's per-boot secrets
// (the wire.SecretCHAP* names), which the agent uses to mount the root and
// does not hand to the booted system.
func IsRootSecret(name string) bool { return strings.HasPrefix(name, "iscsi.") }
