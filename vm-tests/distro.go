package vmtest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// distroMu serializes DistroRoot's building and customizing of the tree.
var distroMu sync.Mutex

// distroSuite is the Debian release of DistroRoot.
const distroSuite = "bookworm"

// distroCheckScript is the distribution root's check, started by systemd
// as sealroot-check.service (a simple service wanted by
// multi-user.target, so not part of the boot it waits for): it waits
// until systemd has finished booting (multi-user.target reached: the
// system is running, or degraded), prints the root disk's block layer
// counts at that point ("distro: disk sda <fields of
// /sys/block/sda/stat>"), or, on an NFS root, the root mount's byte
// counts and the RPCs it sent ("distro: nfs bytes: ..." and "distro: nfs
// READ: ..." lines of /proc/self/mountstats), then "distro: booted
// systemd <state>", and pauses while the test reads the server's
// counters (the sleep binary's own read comes after the guest's count,
// before the server's). Then it reports how many @sealroot-iscsi keepers survived switch_root into
// systemd and the marker of the previous boot, increments the marker,
// syncs and asks systemd to power off.
const distroCheckScript = `#!/bin/sh
exec >/dev/console 2>&1
state=$(systemctl is-system-running --wait 2>/dev/null)
for s in /sys/block/sd*/stat; do
	[ -f "$s" ] || continue
	d=${s#/sys/block/}
	echo "distro: disk ${d%/stat} $(cat $s)"
done
awk '$1 == "device" { on = ($5 == "/" && $8 ~ /^nfs/); ops = 0; next }
on && $1 == "bytes:" { sub(/^[ \t]+/, ""); print "distro: nfs " $0 }
on && $1 == "per-op" { ops = 1; next }
on && ops && NF > 5 && $2 > 0 { sub(/^[ \t]+/, ""); print "distro: nfs " $0 }' /proc/self/mountstats
echo "distro: booted systemd $state"
sleep 3
echo "distro: keeper=$(pgrep -c -f '^@sealroot-iscsi')"
echo "distro: hostname=$(cat /proc/sys/kernel/hostname) credential=$(cat /run/sealroot-secret/sha256 2>/dev/null || echo none)"
ps -eo pid,ppid,args | grep -e '@sealroot' | grep -v grep | sed 's/^/distro: ps: /'
m=none
[ -f /var/lib/sealroot-marker ] && m=$(cat /var/lib/sealroot-marker)
echo "distro: marker=$m"
n=1
[ "$m" != none ] && n=$((m+1))
echo $n > /var/lib/sealroot-marker
sync
echo "distro: wrote marker $n"
systemctl --no-block poweroff
`

const distroCheckUnit = `[Unit]
Description=sealroot distribution root check
After=basic.target sealroot-secret.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/sealroot-check

[Install]
WantedBy=multi-user.target
`

// distroSecretUnit reads the machine's secret api-token the way
// docs/secrets-and-files.md tells a workload to: LoadCredential= from
// /run/sealroot/secrets, as a dynamic user. It leaves the value's digest
// for the check script, never the value.
const distroSecretUnit = `[Unit]
Description=sealroot secret reader (LoadCredential=)
ConditionPathExists=/run/sealroot/secrets/api-token

[Service]
Type=oneshot
DynamicUser=yes
RuntimeDirectory=sealroot-secret
RuntimeDirectoryPreserve=yes
LoadCredential=api-token:/run/sealroot/secrets/api-token
ExecStart=/bin/sh -c 'sha256sum < "$$CREDENTIALS_DIRECTORY/api-token" | cut -d" " -f1 > /run/sealroot-secret/sha256'

[Install]
WantedBy=multi-user.target
`

// DistroRoot returns a Debian root tree (debootstrap --variant=minbase
// with systemd-sysv, udev, iproute2 and procps) under the build cache,
// built on first use, with sealroot-check.service enabled and the
// console on ttyS0. It skips t when debootstrap is missing (fails under
// CI=true).
func DistroRoot(ctx context.Context, t testing.TB) string {
	t.Helper()
	RequireTools(t, "debootstrap")
	// Tests running in parallel share the tree.
	distroMu.Lock()
	defer distroMu.Unlock()
	dir := filepath.Join(CacheDir(t), "distro-root", distroSuite)
	if _, err := os.Stat(filepath.Join(dir, "lib", "systemd", "systemd")); err != nil {
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		mirror := debianMirror()
		t.Logf("vmtest: debootstrap %s from %s (once, cached in %s)", distroSuite, mirror, dir)
		cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
			"--include=systemd-sysv,udev,iproute2,procps", distroSuite, tmp, mirror)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("vmtest: debootstrap: %v: %s", err, lastLines(out, 20))
		}
		if err := os.Rename(tmp, dir); err != nil {
			t.Fatal(err)
		}
	}
	customizeDistro(t, dir)
	return dir
}

// customizeDistro writes the check service, an empty fstab (the agent
// mounted the root) and a hostname into the tree; it is idempotent.
func customizeDistro(t testing.TB, dir string) {
	t.Helper()
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"usr/local/sbin/sealroot-check", distroCheckScript, 0o755},
		{"etc/systemd/system/sealroot-check.service", distroCheckUnit, 0o644},
		{"etc/systemd/system/sealroot-secret.service", distroSecretUnit, 0o644},
		{"etc/fstab", "# the root is mounted by the sealroot agent\n", 0o644},
		{"etc/hostname", "sealroot-distro\n", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	wants := filepath.Join(dir, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"sealroot-check.service", "sealroot-secret.service"} {
		link := filepath.Join(wants, unit)
		os.Remove(link)
		if err := os.Symlink("/etc/systemd/system/"+unit, link); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, "var/lib/sealroot-marker"))
}

// debianMirror is $SEALROOT_DISTRO_MIRROR, else the first Debian archive
// URI of the host's APT sources, else deb.debian.org.
func debianMirror() string {
	if m := os.Getenv("SEALROOT_DISTRO_MIRROR"); m != "" {
		return m
	}
	srcs, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	srcs = append([]string{"/etc/apt/sources.list"}, srcs...)
	for _, p := range srcs {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(line, "#") {
				continue
			}
			for _, field := range strings.Fields(line) {
				if strings.HasPrefix(field, "http") && strings.HasSuffix(strings.TrimRight(field, "/"), "/debian") {
					f.Close()
					return field
				}
			}
		}
		f.Close()
	}
	return "http://deb.debian.org/debian"
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
