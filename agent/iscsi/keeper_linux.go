package iscsi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// keeperReady is the line the keeper writes once it listens for events.
const keeperReady = "ready"

// keeperStartTimeout bounds the wait for the keeper to be ready.
const keeperStartTimeout = 10 * time.Second

// StartKeeper starts the keeper daemon for the session of d: this
// executable again (/proc/self/exe, argv[0] KeeperName, its own session,
// same uid), which must call RunKeeper when its argv[0] is KeeperName.
// The target, including the CHAP credentials, goes to it through a pipe
// (fd 3); it answers on fd 4 once it listens for kernel events, so no
// connection error is missed once StartKeeper returns. out receives its
// logs. Call it before switch_root: the daemon needs no file afterwards.
func StartKeeper(t Target, d *Disk, out *os.File) error {
	if d.Session != nil {
		t.Login.ISID = d.Session.ISID
	}
	t = t.withDefaults()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("iscsi: keeper pipe: %w", err)
	}
	defer cfgW.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return fmt.Errorf("iscsi: keeper pipe: %w", err)
	}
	defer readyR.Close()
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", Args: []string{KeeperName},
		ExtraFiles: []*os.File{cfgR, readyW}, Stdout: out, Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	cfgR.Close()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("iscsi: start keeper: %w", err)
	}
	if err := jsonEncode(cfgW, newHandover(t, d)); err != nil {
		cmd.Process.Kill()
		return fmt.Errorf("iscsi: keeper handover: %w", err)
	}
	cfgW.Close()
	readyR.SetReadDeadline(time.Now().Add(keeperStartTimeout))
	line, err := bufio.NewReader(readyR).ReadString('\n')
	if err != nil || line != keeperReady+"\n" {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("iscsi: keeper did not start: %q: %v", line, err)
	}
	return cmd.Process.Release()
}

// RunKeeper is the keeper daemon's body: it reads the handover from
// cfg, listens for the kernel's connection errors, reports ready and
// then logs in again after every drop until ctx ends.
func RunKeeper(ctx context.Context, cfg io.Reader, ready io.Writer, log hclog.Logger) error {
	h, err := readHandover(cfg)
	if err != nil {
		return err
	}
	nl, err := OpenNetlink(true)
	if err != nil {
		return err
	}
	defer nl.Close()
	k := h.newKeeper()
	k.Target.Logger = log
	k.k = nl
	if _, err := io.WriteString(ready, keeperReady+"\n"); err != nil {
		return fmt.Errorf("iscsi: keeper ready: %w", err)
	}
	if c, ok := ready.(io.Closer); ok {
		c.Close()
	}
	log.Info("keeping iSCSI session", "sid", h.SID, "cid", h.CID, "portal", h.Portal)
	return k.run(ctx)
}
