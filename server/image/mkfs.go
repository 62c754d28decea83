package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// uuidFrom formats 16 bytes as a version-4 style UUID.
func uuidFrom(b []byte) string {
	u := append([]byte(nil), b[:16]...)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// imageSize is the ext4 image size for a tree: data and inodes plus 30%
// and 16 MiB of slack (journal, metadata), rounded up to a MiB.
func imageSize(s treeSummary) (size, inodes int64) {
	used := (s.blocks + s.inodes) * 4096
	size = used*13/10 + 16<<20
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	return size, s.inodes*5/4 + 1024
}

// buildExt4 makes an ext4 image of tree at out without root privileges.
// The result depends only on the tree: UUID and directory hash seed come
// from the tree digest, mke2fs's clock is faked to the newest mtime, and
// inode change and access times (which mke2fs copies from the extracted
// tree, whose directories it reads, bumping their atime under relatime)
// are then set to that time with debugfs.
func (s *Store) buildExt4(ctx context.Context, tree, out string, sum treeSummary) error {
	size, inodes := imageSize(sum)
	fake := strconv.FormatInt(max(sum.maxMtime, 1), 10)
	env := append(os.Environ(), "E2FSPROGS_FAKE_TIME="+fake, "MKE2FS_DEVICE_SECTSIZE=512")
	args := []string{"-q", "-F", "-t", "ext4", "-d", tree, "-b", "4096", "-L", "sealroot",
		"-N", strconv.FormatInt(inodes, 10), "-m", "0",
		"-U", uuidFrom(sum.digest[:16]),
		"-E", "root_owner=0:0,hash_seed=" + uuidFrom(sum.digest[16:]) + ",lazy_itable_init=0,nodiscard",
		out, strconv.FormatInt(size/1024, 10) + "k"}
	if err := run(ctx, env, s.mkfs, args...); err != nil {
		return err
	}
	used, err := usedInodes(ctx, s.debugfs, out)
	if err != nil {
		return err
	}
	var script bytes.Buffer
	for ino := int64(2); ino <= used; ino++ {
		if ino > 2 && ino < 11 {
			continue // reserved inodes already carry the fake time
		}
		fmt.Fprintf(&script, "sif <%d> ctime %s\nsif <%d> atime %s\n", ino, fake, ino, fake)
	}
	cmd := exec.CommandContext(ctx, s.debugfs, "-w", "-f", "-", out)
	cmd.Env, cmd.Stdin = env, &script
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: debugfs: %w: %s", err, lastLine(outb))
	}
	return nil
}

var inodeStats = regexp.MustCompile(`(?m)^Inode count:\s+(\d+)\s*$[\s\S]*?^Free inodes:\s+(\d+)\s*$`)

// usedInodes returns the highest inode number mke2fs -d allocated: it
// allocates in order, so that is the count of used inodes.
func usedInodes(ctx context.Context, debugfs, img string) (int64, error) {
	out, err := exec.CommandContext(ctx, debugfs, "-R", "stats", img).Output()
	if err != nil {
		return 0, fmt.Errorf("image: debugfs stats: %w", err)
	}
	m := inodeStats.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("image: debugfs stats: no inode counts")
	}
	total, _ := strconv.ParseInt(string(m[1]), 10, 64)
	free, _ := strconv.ParseInt(string(m[2]), 10, 64)
	return total - free, nil
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: %s: %w: %s", name, err, lastLine(out))
	}
	return nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
