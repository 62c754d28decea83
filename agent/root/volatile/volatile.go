// Package volatile is the agent's root stage of kind "volatile": the
// machine's shared base, read-only (over NFS, or over iSCSI when the plan
// says via=iscsi), under an overlay whose upper is a tmpfs. Writes live in
// memory and are gone at the next boot, by design: thin clients, kiosks,
// elastic workers.
package volatile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/root/nfs"
	"github.com/sealroot/sealroot/wire"
)

// DefaultMountpoint is where the root is mounted.
const DefaultMountpoint = "/newroot"

// DefaultDir holds the layers: base/ (the shared base) and rw/ (the tmpfs
// with upper/ and work/). They stay mounted, out of sight, after
// switch_root.
const DefaultDir = "/sealroot"

// ErrPlan is wrapped by every error about an unusable volatile plan.
var ErrPlan = errors.New("invalid volatile root plan")

// Stage mounts volatile roots. The zero value reads bases over NFS.
type Stage struct {
	Mountpoint string       // default DefaultMountpoint
	Dir        string       // default DefaultDir
	Logger     hclog.Logger // default discards
	// SysMount is mount(2); tests replace it.
	SysMount nfs.MountFunc
	// ISCSI mounts a base served over iSCSI read-only at dir (the agent
	// sets it to the iSCSI stage's MountBase); nil refuses such plans.
	ISCSI func(ctx context.Context, p *wire.Payload, dir string) error
	// TmpfsSize limits the writable layer, as tmpfs's size= ("50%",
	// "2g"); default the kernel's (half the memory).
	TmpfsSize string
}

// Name implements root.Stage.
func (*Stage) Name() string { return wire.RootVolatile }

// Mount implements root.Stage.
func (s *Stage) Mount(ctx context.Context, p *wire.Payload) (string, error) {
	if p.Root.Kind != wire.RootVolatile {
		return "", fmt.Errorf("%w: kind %q", ErrPlan, p.Root.Kind)
	}
	mount := s.SysMount
	if mount == nil {
		mount = nfs.SysMount
	}
	top := orDefault(s.Dir, DefaultDir)
	base, rw := filepath.Join(top, "base"), filepath.Join(top, "rw")
	dir := orDefault(s.Mountpoint, DefaultMountpoint)
	for _, d := range []string{base, rw, dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	via := p.Root.Params[wire.VolatileVia]
	switch via {
	case "", wire.RootNFS:
		via = wire.RootNFS
		if err := nfs.MountRO(ctx, p, base, mount); err != nil {
			return "", err
		}
	case wire.ViaISCSI:
		if s.ISCSI == nil {
			return "", fmt.Errorf("%w: base via iscsi, and this agent has no iSCSI initiator", ErrPlan)
		}
		if err := s.ISCSI(ctx, p, base); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("%w: base via %q (want nfs or iscsi)", ErrPlan, via)
	}
	tmpfsOpts := "mode=0755"
	if s.TmpfsSize != "" {
		tmpfsOpts += ",size=" + s.TmpfsSize
	}
	if err := mount("tmpfs", rw, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpfsOpts); err != nil {
		return "", err
	}
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", err
		}
	}
	opts := "lowerdir=" + base + ",upperdir=" + upper + ",workdir=" + work
	if err := mount("overlay", dir, "overlay", 0, opts); err != nil {
		return "", err
	}
	log := s.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log.Named("volatile-root").Info("volatile root mounted", "via", via, "dir", dir)
	return dir, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
