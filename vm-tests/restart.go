package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// configPath is where startSealroot writes the server configuration.
func (s *Sealroot) configPath() string { return filepath.Join(s.StateDir, "sealroot.json") }

// Restart stops the `sealroot serve` of s that startSealroot started in
// lab (SIGTERM, SIGKILL after 15 s), starts it again with the same
// configuration and state, and returns once the admin socket answers.
// It returns how long the server was down.
func (s *Sealroot) Restart(ctx context.Context, t testing.TB, lab *Lab) (time.Duration, error) {
	t.Helper()
	begin := time.Now()
	if err := s.Stop(); err != nil {
		return 0, err
	}
	if err := s.Start(ctx, t, lab); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

// Stop stops the `sealroot serve` of s (SIGTERM, SIGKILL after 15 s).
func (s *Sealroot) Stop() error {
	pid, err := s.servePID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("vmtest: stop sealroot serve (pid %d): %w", pid, err)
	}
	if !waitGone(pid, 15*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, 10*time.Second) {
			return fmt.Errorf("vmtest: sealroot serve (pid %d) does not exit", pid)
		}
	}
	return nil
}

// Start starts `sealroot serve` of s in lab again, with the configuration
// in its state directory, and returns once the admin socket answers.
func (s *Sealroot) Start(ctx context.Context, t testing.TB, lab *Lab) error {
	t.Helper()
	lab.Start(t, s.Bin, "serve", "--config", s.configPath(), "--log-level", "debug")
	return s.waitReady(ctx)
}

// servePID finds the process running `sealroot serve` with s's
// configuration: its command line names the test's own state directory.
func (s *Sealroot) servePID() (int, error) {
	want := []byte("\x00serve\x00--config\x00" + s.configPath() + "\x00")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.HasPrefix(cmdline, []byte(s.Bin+"\x00")) && bytes.Contains(cmdline, want) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("vmtest: no running sealroot serve with %s", s.configPath())
}

// waitGone waits until pid has exited and been reaped (or is a zombie).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && bytes.Contains(st, []byte(") Z ")) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
