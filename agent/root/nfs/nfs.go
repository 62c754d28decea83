// Package nfs is the agent's root stage of kind "nfs": it mounts the
// machine's own NFSv4.2 export read-write at the new root. Package
// agent/root/volatile uses MountRO for a volatile root's base.
//
// Mounts use with mount(2) and text options (the kernel's NFS client
// parses them; no mount.nfs helper, no rpcbind): a hard mount over TCP,
// so I/O waits through a server restart and the kernel's NFSv4 client
// recovers its state by itself. The server's address is its WireGuard
// tunnel address, so the traffic goes through the tunnel.
package nfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/wire"
)

// DefaultMountpoint is where the root is mounted.
const DefaultMountpoint = "/newroot"

// ErrPlan is wrapped by every error about an unusable NFS root plan.
var ErrPlan = errors.New("invalid NFS root plan")

// Options are an NFS mount's source and options for mount(2).
type Options struct {
	Source string // server:/path
	Data   string // vers=4.2,addr=...,...
}

// MountFunc is mount(2).
type MountFunc func(source, target, fstype string, flags uintptr, data string) error

// SysMount is mount(2), with an error that names the mount.
func SysMount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount " + fstype + " " + source, Path: target, Err: err}
	}
	return nil
}

var pathPattern = regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`)

// Plan turns a payload of kind "nfs" or "volatile" into mount options,
// checking every parameter: nothing from the plan reaches the option
// string unchecked.
func Plan(p *wire.Payload) (Options, error) {
	var o Options
	par := p.Root.Params
	server, err := netip.ParseAddr(par[wire.NFSServer])
	if err != nil || server.Zone() != "" {
		return o, fmt.Errorf("%w: server %q is not an IP address", ErrPlan, par[wire.NFSServer])
	}
	port := 2049
	if s := par[wire.NFSPort]; s != "" {
		if port, err = strconv.Atoi(s); err != nil || port < 1 || port > 65535 {
			return o, fmt.Errorf("%w: port %q", ErrPlan, s)
		}
	}
	exp := par[wire.NFSPath]
	if !pathPattern.MatchString(exp) || path.Clean(exp) != exp {
		return o, fmt.Errorf("%w: export path %q", ErrPlan, exp)
	}
	vers := par[wire.NFSVersion]
	if vers == "" {
		vers = "4.2"
	}
	if vers != "4.2" && vers != "4.1" {
		return o, fmt.Errorf("%w: NFS version %q (want 4.1 or 4.2)", ErrPlan, vers)
	}
	host := server.String()
	if server.Is6() {
		host = "[" + host + "]"
	}
	o.Source = host + ":" + exp
	opts := []string{"vers=" + vers, "addr=" + server.String(), "port=" + strconv.Itoa(port),
		"proto=tcp", "hard", "timeo=100", "sec=sys"}
	if p.Tunnel != nil {
		if c, err := netip.ParsePrefix(p.Tunnel.Address); err == nil {
			opts = append(opts, "clientaddr="+c.Addr().String())
		}
	}
	o.Data = strings.Join(opts, ",")
	return o, nil
}

// Stage mounts persistent NFS roots (kind "nfs"). The zero value works.
type Stage struct {
	Mountpoint string       // default DefaultMountpoint
	Logger     hclog.Logger // default discards
	SysMount   MountFunc    // default mount(2)
}

// Name implements root.Stage.
func (*Stage) Name() string { return wire.RootNFS }

// Mount implements root.Stage.
func (s *Stage) Mount(ctx context.Context, p *wire.Payload) (string, error) {
	if p.Root.Kind != wire.RootNFS {
		return "", fmt.Errorf("%w: kind %q", ErrPlan, p.Root.Kind)
	}
	o, err := Plan(p)
	if err != nil {
		return "", err
	}
	dir := orDefault(s.Mountpoint, DefaultMountpoint)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := mountFunc(s.SysMount)(o.Source, dir, "nfs4", 0, o.Data); err != nil {
		return "", err
	}
	logger(s.Logger).Info("root mounted", "source", o.Source, "dir", dir)
	return dir, nil
}

// MountRO mounts the NFS export a payload plans at dir, read-only: a
// volatile root's shared base.
func MountRO(ctx context.Context, p *wire.Payload, dir string, mount MountFunc) error {
	o, err := Plan(p)
	if err != nil {
		return err
	}
	return mountFunc(mount)(o.Source, dir, "nfs4", unix.MS_RDONLY, o.Data)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func mountFunc(f MountFunc) MountFunc {
	if f == nil {
		return SysMount
	}
	return f
}

func logger(l hclog.Logger) hclog.Logger {
	if l == nil {
		return hclog.NewNullLogger()
	}
	return l.Named("nfs-root")
}
