package nfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// quickDeath is how long a daemon must live for the backoff to reset.
const quickDeath = 30 * time.Second

// supervise runs the daemon until Close, restarting it with backoff.
func (g *Ganesha) supervise() {
	defer close(g.done)
	backoff := g.cfg.MinBackoff
	for {
		began := time.Now()
		err := g.runOnce()
		select {
		case <-g.stop:
			return
		default:
		}
		if time.Since(began) > quickDeath {
			backoff = g.cfg.MinBackoff
		}
		g.restarts.Add(1)
		g.log.Error("ganesha exited; restarting", "error", err, "backoff", backoff)
		select {
		case <-g.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, g.cfg.MaxBackoff)
	}
}

// runOnce starts the daemon and returns when it has exited.
func (g *Ganesha) runOnce() error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	cmd := g.cfg.Command(g.cfg.Binary, "-F", "-f", g.confPath, "-L", "/dev/stderr",
		"-p", filepath.Join(g.cfg.Dir, "ganesha.pid"), "-N", "NIV_EVENT")
	cmd.Stdout, cmd.Stderr = pw, pw
	// ganesha dies with sealroot rather than serving on unsupervised.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	g.mu.Lock()
	err = cmd.Start()
	if err == nil {
		g.proc, g.ready, g.started = cmd.Process, false, g.gen
		g.notifyLocked()
	}
	g.mu.Unlock()
	pw.Close()
	if err != nil {
		pr.Close()
		return fmt.Errorf("start %s: %w", g.cfg.Binary, err)
	}
	g.log.Info("ganesha started", "pid", cmd.Process.Pid)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		g.readLog(pr, cmd.Process)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	err = g.waitOrStop(cmd.Process, exited)
	<-logDone
	g.mu.Lock()
	g.proc, g.ready = nil, false
	g.notifyLocked()
	g.mu.Unlock()
	return err
}

// waitOrStop returns the daemon's exit; on Close it stops the daemon first.
func (g *Ganesha) waitOrStop(p *os.Process, exited <-chan error) error {
	select {
	case err := <-exited:
		return exitError(err)
	case <-g.stop:
	}
	g.log.Info("stopping ganesha", "pid", p.Pid)
	p.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		return exitError(err)
	case <-time.After(g.cfg.StopTimeout):
	}
	g.log.Warn("ganesha ignored SIGTERM; killing it", "pid", p.Pid)
	p.Kill()
	return exitError(<-exited)
}

func exitError(err error) error {
	if err == nil {
		return errors.New("ganesha exited with status 0")
	}
	return fmt.Errorf("ganesha: %w", err)
}
