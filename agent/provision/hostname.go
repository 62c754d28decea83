package provision

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"golang.org/x/sys/unix"
)

// hostnameRE is one DNS label, the form of a sealroot machine name.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// ImageHostname returns the host name the image in root sets in
// /etc/hostname (resolved inside root), or "" when it sets none: the file
// is missing or holds only blank and comment lines.
func ImageHostname(root string) (string, error) {
	f, err := openInRoot(root, "/etc/hostname", unix.O_RDONLY)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("image hostname: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(io.LimitReader(f, 4096))
	for s.Scan() {
		line := bytes.TrimSpace(s.Bytes())
		if len(line) > 0 && line[0] != '#' {
			return string(line), nil
		}
	}
	return "", nil
}

// Hostname sets the kernel host name to name with set (unix.Sethostname
// when nil) unless the image in root sets its own. It returns the host
// name the booted system starts with and whether it came from name.
func Hostname(root, name string, set func([]byte) error) (string, bool, error) {
	img, err := ImageHostname(root)
	if err != nil {
		return "", false, err
	}
	if img != "" {
		return img, false, nil
	}
	if !hostnameRE.MatchString(name) {
		return "", false, fmt.Errorf("machine name %q is not a host name", name)
	}
	if set == nil {
		set = unix.Sethostname
	}
	if err := set([]byte(name)); err != nil {
		return "", false, fmt.Errorf("sethostname: %w", err)
	}
	return name, true, nil
}
