package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// treeSummary is what the image builder needs to know about a tree.
type treeSummary struct {
	digest   [32]byte // over names, types, owners, modes, mtimes, contents
	blocks   int64    // 4 KiB blocks of file data
	inodes   int64
	maxMtime int64
}

// summarize hashes a tree in lexical order. Files are opened with
// O_NOATIME so that hashing does not change what mkfs.ext4 copies.
func summarize(dir string) (treeSummary, error) {
	var s treeSummary
	h := sha256.New()
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s.inodes++
		s.maxMtime = max(s.maxMtime, st.Mtim.Sec)
		fmt.Fprintf(h, "%q %o %d:%d %d.%09d %d %d", rel, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec, st.Rdev, fi.Size())
		if st.Nlink > 1 && !fi.IsDir() {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				fmt.Fprintf(h, " link %q\n", first)
				s.inodes--
				return nil
			}
			links[key] = rel
		}
		switch {
		case fi.Mode().IsRegular():
			s.blocks += (fi.Size() + 4095) / 4096
			if err := hashFile(h, p); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " -> %q", t)
		case fi.IsDir():
			s.blocks++
		}
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("image: hash tree: %w", err)
	}
	copy(s.digest[:], h.Sum(nil))
	return s, nil
}

func hashFile(h hash.Hash, p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		f, err = os.Open(p)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fh := sha256.New()
	if _, err := io.Copy(fh, f); err != nil {
		return err
	}
	fmt.Fprintf(h, " %x", fh.Sum(nil))
	return nil
}

// fileDigest returns the hex sha256 of a file.
func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("image: hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
