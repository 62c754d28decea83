// Package iscsi is the agent's root stage of kind "iscsi": it logs in to
// the target the credential names with the per-boot CHAP credentials
// (mutual CHAP when the credential carries a target secret), hands the
// connection to the kernel, waits for the LUN's block device and mounts
// it (ext4 by default) at the new root.
//
// # Keeper
//
// The kernel session has ErrorRecoveryLevel 0: after the connection
// drops, I/O is queued for Target.RecoveryTimeout (120 s) and then fails
// unless someone logs in again. With Stage.Keep set (the agent sets it
// to initiator.StartKeeper) the stage starts the @sealroot-iscsi keeper
// daemon after mounting, before switch_root; see agent/iscsi.
package iscsi

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	initiator "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/wire"
)

// DefaultMountpoint is where the root is mounted.
const DefaultMountpoint = "/newroot"

// DefaultFSType is the root's file system when the plan names none.
const DefaultFSType = "ext4"

// ErrPlan is wrapped by every error about an unusable iSCSI root plan.
var ErrPlan = errors.New("invalid iSCSI root plan")

// Stage mounts iSCSI roots. The zero value works.
type Stage struct {
	// Mountpoint defaults to DefaultMountpoint.
	Mountpoint string
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Attach attaches the LUN; default initiator.Attach.
	Attach func(ctx context.Context, t initiator.Target) (*initiator.Disk, error)
	// MountFS mounts dev at dir; default mount(2) with no options.
	MountFS func(dev, dir, fstype string) error
	// Keep, when set, starts a daemon that logs in again after the
	// connection drops (initiator.StartKeeper wrapped); nil starts none.
	// Its failure fails the stage: without it the root would not survive
	// a server restart.
	Keep func(t initiator.Target, d *initiator.Disk) error
}

// Name implements root.Stage.
func (*Stage) Name() string { return wire.RootISCSI }

// Mount implements root.Stage.
func (s *Stage) Mount(ctx context.Context, p *wire.Payload) (string, error) {
	log := s.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("iscsi-root")
	t, fstype, err := Plan(p)
	if err != nil {
		return "", err
	}
	t.Logger = log
	attach, mountFS := s.Attach, s.MountFS
	if attach == nil {
		attach = initiator.Attach
	}
	if mountFS == nil {
		mountFS = mountDevice
	}
	disk, err := attach(ctx, t)
	if err != nil {
		return "", fmt.Errorf("attach %s on %s: %w", t.Login.TargetName, t.Portal, err)
	}
	dir := s.Mountpoint
	if dir == "" {
		dir = DefaultMountpoint
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := mountFS(disk.Device, dir, fstype); err != nil {
		return "", err
	}
	log.Info("root mounted", "device", disk.Device, "fstype", fstype, "dir", dir, "session", disk.SID)
	if s.Keep != nil {
		if err := s.Keep(t, disk); err != nil {
			return "", fmt.Errorf("iSCSI keeper: %w", err)
		}
		log.Info("iSCSI keeper started", "name", initiator.KeeperName, "session", disk.SID)
	}
	return dir, nil
}

// MountBase attaches the LUN of a volatile root's base (kind "volatile",
// via iscsi) and mounts it read-only at dir, without journal replay; the
// keeper, when set, keeps the session as for any iSCSI root.
func (s *Stage) MountBase(ctx context.Context, p *wire.Payload, dir string) error {
	if p.Root.Kind != wire.RootVolatile {
		return fmt.Errorf("%w: kind %q is not volatile", ErrPlan, p.Root.Kind)
	}
	asISCSI := *p
	asISCSI.Root.Kind = wire.RootISCSI
	base := *s
	base.Mountpoint = dir
	base.MountFS = func(dev, dir, fstype string) error {
		if err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY, "noload"); err != nil {
			return &os.PathError{Op: "mount " + fstype + " " + dev + " read-only", Path: dir, Err: err}
		}
		return nil
	}
	if s.MountFS != nil {
		base.MountFS = s.MountFS
	}
	_, err := base.Mount(ctx, &asISCSI)
	return err
}

func mountDevice(dev, dir, fstype string) error {
	if err := unix.Mount(dev, dir, fstype, 0, ""); err != nil {
		return &os.PathError{Op: "mount " + fstype + " " + dev, Path: dir, Err: err}
	}
	return nil
}

// Plan turns a payload of kind "iscsi" into the initiator's target and
// the file system type. It checks every parameter and secret.
func Plan(p *wire.Payload) (initiator.Target, string, error) {
	var t initiator.Target
	if p.Root.Kind != wire.RootISCSI {
		return t, "", fmt.Errorf("%w: kind %q", ErrPlan, p.Root.Kind)
	}
	par := p.Root.Params
	portal, err := netip.ParseAddrPort(par[wire.ISCSIPortal])
	if err != nil {
		return t, "", fmt.Errorf("%w: portal %q is not ip:port: %v", ErrPlan, par[wire.ISCSIPortal], err)
	}
	t.Portal = portal.String()
	t.Login.TargetName, t.Login.InitiatorName = par[wire.ISCSITarget], par[wire.ISCSIInitiator]
	if t.Login.TargetName == "" || t.Login.InitiatorName == "" {
		return t, "", fmt.Errorf("%w: target and initiator names are required", ErrPlan)
	}
	if l := par[wire.ISCSILUN]; l != "" {
		if t.LUN, err = strconv.Atoi(l); err != nil || t.LUN < 0 || t.LUN > 16383 {
			return t, "", fmt.Errorf("%w: lun %q", ErrPlan, l)
		}
	}
	if t.Login.CHAP, err = chap(p.Secrets); err != nil {
		return t, "", err
	}
	fstype := par[wire.ISCSIFSType]
	if fstype == "" {
		fstype = DefaultFSType
	}
	return t, fstype, nil
}

// chap reads the per-boot CHAP credentials. The initiator's are
// required; the target's, when present, make the login mutual.
func chap(sec map[string][]byte) (*pdu.CHAP, error) {
	c := &pdu.CHAP{
		User: string(sec[wire.SecretCHAPUser]), Secret: string(sec[wire.SecretCHAPSecret]),
		TargetUser: string(sec[wire.SecretCHAPTargetUser]), TargetSecret: string(sec[wire.SecretCHAPTargetSecret]),
	}
	if c.User == "" || c.Secret == "" {
		return nil, fmt.Errorf("%w: secrets %s and %s are required", ErrPlan, wire.SecretCHAPUser, wire.SecretCHAPSecret)
	}
	if !printable(c.User) || !printable(c.TargetUser) {
		return nil, fmt.Errorf("%w: CHAP user names must be printable text", ErrPlan)
	}
	if c.TargetSecret != "" && c.TargetSecret == c.Secret {
		return nil, fmt.Errorf("%w: target and initiator CHAP secrets are equal", ErrPlan)
	}
	return c, nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
