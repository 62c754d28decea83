package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

// ErrUnclean means a filesystem to capture is not clean: e2fsck found
// errors, or its journal still holds writes (the machine did not shut
// down cleanly).
var ErrUnclean = errors.New("filesystem not clean")

// captureChunk is the unit Capture copies in; all-zero chunks stay holes.
const captureChunk = 1 << 20

// Capture stores the ext4 filesystem on disk (size bytes, e.g. a
// machine's closed volume) as image name. The filesystem is copied into
// the store's tmp/ first and checked there: e2fsck -fn must find it clean
// and its journal empty, else Capture fails with ErrUnclean and stores
// nothing. The copy's files are then read out with debugfs rdump and
// imported as Import does, so the new base is built the same
// reproducible way as any other: capturing an unchanged volume gives its
// own base again. rdump keeps regular files, directories and symlinks
// with their modes and owners and the times of files and directories;
// it makes hard links separate copies, gives symlinks the capture's
// time, and skips device nodes, FIFOs and sockets (a booted root's /dev
// is a devtmpfs).
func (s *Store) Capture(ctx context.Context, name string, disk io.ReaderAt, size int64) (*Image, error) {
	if !namePattern.MatchString(name) {
		return nil, fmt.Errorf("image: name %q: %w", name, ErrBadName)
	}
	work, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "capture-")
	if err != nil {
		return nil, fmt.Errorf("image: capture: %w", err)
	}
	defer os.RemoveAll(work)
	fsImage := filepath.Join(work, "captured.img")
	if err := copySparse(ctx, fsImage, disk, size); err != nil {
		return nil, fmt.Errorf("image: capture: copy: %w", err)
	}
	if err := s.checkClean(ctx, fsImage); err != nil {
		return nil, err
	}
	tree := filepath.Join(work, "tree")
	if err := s.dumpTree(ctx, fsImage, tree); err != nil {
		return nil, fmt.Errorf("image: capture: %w", err)
	}
	return s.Import(ctx, name, tree, nil)
}

// dumpTree reads the files of the ext4 filesystem in img out into a new
// directory tree with debugfs rdump (see Capture for what rdump keeps),
// without the filesystem's lost+found.
func (s *Store) dumpTree(ctx context.Context, img, tree string) error {
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, s.debugfs, "-R", "rdump / "+tree, img)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("debugfs rdump: %w: %s", err, lastLine(out))
	}
	// lost+found belongs to the filesystem, not the tree: mkfs makes one.
	// Removing it must not change the root's times.
	fi, err := os.Stat(tree)
	if err == nil {
		err = os.RemoveAll(filepath.Join(tree, "lost+found"))
	}
	if err == nil {
		err = os.Chtimes(tree, fi.ModTime(), fi.ModTime())
	}
	return err
}

var needsRecovery = regexp.MustCompile(`(?m)^Filesystem features:.*\bneeds_recovery\b`)

// checkClean fails with ErrUnclean unless the ext4 filesystem in img has
// an empty journal and e2fsck -fn finds no error.
func (s *Store) checkClean(ctx context.Context, img string) error {
	stats, err := exec.CommandContext(ctx, s.debugfs, "-R", "stats", img).Output()
	if err != nil {
		return fmt.Errorf("image: capture: not an ext4 filesystem (debugfs stats: %v): %w", err, ErrUnclean)
	}
	if needsRecovery.Match(stats) {
		return fmt.Errorf("image: capture: the journal holds writes not yet applied (the machine did not shut down cleanly): %w", ErrUnclean)
	}
	cmd := exec.CommandContext(ctx, s.e2fsck, "-f", "-n", img)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("image: capture: e2fsck -fn exited %d (%s): %w", exit.ExitCode(), lastLine(out.Bytes()), ErrUnclean)
		}
		return fmt.Errorf("image: capture: e2fsck: %w", err)
	}
	return nil
}

// copySparse copies size bytes of src into a new file at dst, leaving
// all-zero chunks as holes.
func copySparse(ctx context.Context, dst string, src io.ReaderAt, size int64) error {
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, captureChunk)
	for off := int64(0); off < size; off += captureChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(captureChunk, size-off))
		if _, err := src.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if allZero(buf[:n]) {
			continue
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
