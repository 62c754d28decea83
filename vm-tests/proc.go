package vmtest

import (
	"fmt"
	"os/exec"
	"time"
)

// proc is a started process group whose exit is observed by one goroutine.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result; valid after done is closed
}

// startProc starts cmd (prepared with ownProcessGroup) and waits for it in
// the background.
func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL to the process group and waits (bounded) for the exit.
// It is safe to call more than once and after the process exited.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	killGroup(p.cmd)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}
