package provision

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/wire"
)

// SecretsDir is where the booted system finds its secrets.
const SecretsDir = "/run/sealroot/secrets"

// Modes of the secrets directory and files.
const (
	secretsDirMode  = 0o700
	secretFileMode  = 0o400
	secretsTmpfsMax = 8 << 20 // bytes of the tmpfs; secrets are at most 64 KiB each
)

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ErrBadSecretName is returned for a secret name that is not a plain file
// name of 1-64 of [A-Za-z0-9._-] ("." and ".." are refused).
var ErrBadSecretName = errors.New("bad secret name")

// CheckSecretName reports why name cannot be a file in SecretsDir.
func CheckSecretName(name string) error {
	if !secretNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w %q", ErrBadSecretName, name)
	}
	return nil
}

// PlaceSecrets writes the operator's secrets as files dir/NAME, mode 0400
// and owned by root, in a directory of mode 0700. With tmpfs it first
// mounts a tmpfs on dir (nosuid, nodev, noexec) and remounts it read-only
// once the files are written. Root secrets (wire.IsRootSecret) are left
// out. It returns the names placed, sorted. dir must not exist yet or be
// an empty directory; with no secrets nothing is created.
func PlaceSecrets(dir string, secrets map[string][]byte, tmpfs bool) ([]string, error) {
	names := make([]string, 0, len(secrets))
	for name := range secrets {
		if wire.IsRootSecret(name) {
			continue
		}
		if err := CheckSecretName(name); err != nil {
			return nil, fmt.Errorf("place secrets: %w", err)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	if err := makeSecretsDir(dir, tmpfs); err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := writeSecret(filepath.Join(dir, name), secrets[name]); err != nil {
			return nil, err
		}
	}
	if tmpfs {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("", dir, "", flags, ""); err != nil {
			return nil, fmt.Errorf("place secrets: remount %s read-only: %w", dir, &os.PathError{Op: "mount", Path: dir, Err: err})
		}
	}
	return names, nil
}

func makeSecretsDir(dir string, tmpfs bool) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("place secrets: %w", err)
	}
	if err := os.Mkdir(dir, secretsDirMode); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("place secrets: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("place secrets: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("place secrets: %s is not a directory", dir)
	}
	if tmpfs {
		opts := fmt.Sprintf("mode=0700,uid=0,gid=0,size=%d", secretsTmpfsMax)
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("tmpfs", dir, "tmpfs", flags, opts); err != nil {
			return fmt.Errorf("place secrets: mount tmpfs: %w", &os.PathError{Op: "mount", Path: dir, Err: err})
		}
	}
	if err := os.Lchown(dir, 0, 0); err != nil {
		return fmt.Errorf("place secrets: %w", err)
	}
	if err := os.Chmod(dir, secretsDirMode); err != nil {
		return fmt.Errorf("place secrets: %w", err)
	}
	return nil
}

// writeSecret creates path (it must not exist) with value, owned by root,
// mode 0400.
func writeSecret(path string, value []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, secretFileMode)
	if err != nil {
		return fmt.Errorf("place secret %s: %w", filepath.Base(path), &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	_, werr := f.Write(value)
	errs := []error{werr, f.Chown(0, 0), f.Chmod(secretFileMode), f.Close()}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("place secret %s: %w", filepath.Base(path), err)
	}
	return nil
}
