package iscsi

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Target says where and how to attach a LUN.
type Target struct {
	// Portal is the target's ip:port (an IP literal: there is no resolver).
	Portal string
	// Login is the login configuration. A zero ISID gets a random one.
	Login Config
	// LUN is the logical unit to wait for; default 0.
	LUN int
	// RecoveryTimeout is how long the kernel queues I/O while the
	// connection is down before failing it; default 120s.
	RecoveryTimeout time.Duration
	// PingInterval makes the kernel send a NOP-Out after this much silence
	// and drop the connection if it gets no answer within as long again;
	// default 5s.
	PingInterval time.Duration
	// ScanTimeout bounds the wait for the block device; default 30s.
	ScanTimeout time.Duration
	// Scheduler is written to the disk's queue/scheduler; default "none"
	// (blk-mq has no "noop").
	Scheduler string
	// SysDir is where sysfs is mounted; default /sys. DevDir: /dev.
	SysDir, DevDir string
	// Logger defaults to a null logger.
	Logger hclog.Logger
}

func (t Target) withDefaults() Target {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.RecoveryTimeout, 120*time.Second)
	def(&t.PingInterval, 5*time.Second)
	def(&t.ScanTimeout, 30*time.Second)
	if t.Scheduler == "" {
		t.Scheduler = "none"
	}
	if t.SysDir == "" {
		t.SysDir = "/sys"
	}
	if t.DevDir == "" {
		t.DevDir = "/dev"
	}
	if t.Logger == nil {
		t.Logger = hclog.NewNullLogger()
	}
	t.Login = t.Login.withDefaults()
	return t
}

// Disk is a LUN the kernel serves as a block device.
type Disk struct {
	SID, CID, HostNo uint32
	Device           string // e.g. /dev/sda
	Session          *Session
}

// Kernel session sizes: commands in flight and the SCSI queue depth.
const (
	cmdsMax    = 128
	queueDepth = 32
)

// Attach logs in to t, hands the connection to the kernel's iscsi_tcp,
// scans the SCSI host and waits for the LUN's block device.
func Attach(ctx context.Context, t Target) (*Disk, error) {
	t = t.withDefaults()
	if t.Login.ISID == ([6]byte{}) {
		if err := randomISID(t.Login.Rand, &t.Login.ISID); err != nil {
			return nil, err
		}
	}
	conn, sess, err := connectLogin(ctx, t)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	nl, err := OpenNetlink(false)
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	d := &Disk{Session: sess}
	if d.SID, d.HostNo, err = nl.createSession(sess.CmdSN, cmdsMax, queueDepth); err != nil {
		return nil, err
	}
	if err := attachConn(nl, d, t, conn); err != nil {
		nl.destroySession(d.SID)
		return nil, err
	}
	t.Logger.Info("iSCSI session started", "sid", d.SID, "host", d.HostNo, "tsih", sess.TSIH,
		"header_digest", sess.Params.HeaderDigest, "max_xmit", sess.Params.MaxXmitDataSegmentLength)
	if d.Device, err = scan(ctx, t, d); err != nil {
		return d, err
	}
	if err := writeSysfs(filepath.Join(t.SysDir, "block", filepath.Base(d.Device), "queue", "scheduler"), t.Scheduler); err != nil {
		t.Logger.Warn("cannot set the I/O scheduler", "device", d.Device, "scheduler", t.Scheduler, "error", err)
	}
	return d, nil
}

func randomISID(r io.Reader, isid *[6]byte) error {
	if _, err := io.ReadFull(r, isid[1:]); err != nil {
		return fmt.Errorf("iscsi: ISID: %w", err)
	}
	isid[0] = 0x80 // type "random" (RFC 7143 section 11.12.5)
	return nil
}

// connectLogin connects to the portal and logs in.
func connectLogin(ctx context.Context, t Target) (*net.TCPConn, *Session, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Portal)
	if err != nil {
		return nil, nil, fmt.Errorf("iscsi: connect to %s: %w", t.Portal, err)
	}
	sess, err := Login(ctx, c, t.Login)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c.(*net.TCPConn), sess, nil
}

// attachConn creates (first time) or reuses d.CID, binds conn to it, sets
// the negotiated parameters and starts it.
func attachConn(nl *Netlink, d *Disk, t Target, conn *net.TCPConn) error {
	cid, err := nl.createConn(d.SID, 0)
	if err != nil {
		return err
	}
	d.CID = cid
	if err := bindFD(nl, d, conn); err != nil {
		return err
	}
	if err := setParams(nl, d.SID, d.CID, d.Session, t, conn.RemoteAddr().(*net.TCPAddr)); err != nil {
		return err
	}
	return nl.startConn(d.SID, d.CID)
}

// bindFD passes the socket to the kernel, which takes its own reference.
func bindFD(nl *Netlink, d *Disk, conn *net.TCPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var berr error
	if err := rc.Control(func(fd uintptr) { berr = nl.bindConn(d.SID, d.CID, int(fd)) }); err != nil {
		return err
	}
	return berr
}

// scan asks the SCSI host to scan and waits for the LUN's block device.
func scan(ctx context.Context, t Target, d *Disk) (string, error) {
	if err := writeSysfs(filepath.Join(t.SysDir, "class", "scsi_host", fmt.Sprintf("host%d", d.HostNo), "scan"), "- - -"); err != nil {
		return "", fmt.Errorf("iscsi: scan: %w", err)
	}
	pattern := filepath.Join(t.SysDir, "class", "iscsi_session", fmt.Sprintf("session%d", d.SID),
		"device", "target*", fmt.Sprintf("*:*:*:%d", t.LUN), "block", "*")
	ctx, cancel := context.WithTimeout(ctx, t.ScanTimeout)
	defer cancel()
	var notOpen error // why the device node there is not usable yet
	for {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			dev := filepath.Join(t.DevDir, filepath.Base(m[0]))
			// The node and the sysfs entry appear before the kernel has
			// made the disk live: until then opening it fails with ENXIO
			// (a slow guest mounted too early). It is ready once it opens.
			f, err := os.Open(dev)
			if err == nil {
				f.Close()
				return dev, nil
			}
			notOpen = err
		}
		select {
		case <-ctx.Done():
			if notOpen != nil {
				return "", fmt.Errorf("iscsi: block device for LUN %d of session %d never opened: %w", t.LUN, d.SID, notOpen)
			}
			return "", fmt.Errorf("iscsi: no block device for LUN %d of session %d: %w", t.LUN, d.SID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func writeSysfs(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
