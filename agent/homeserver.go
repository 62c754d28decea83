package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/sealroot/sealroot/wire"
)

// HomeServerDownError is the failure of the tunnel or root step of a
// machine that attested, because the server holding its root (its home
// server: the tunnel's endpoint) does not answer. The root is unavailable
// until that server is back; another attestation server cannot help.
type HomeServerDownError struct {
	// Server is the home server's tunnel endpoint, "" without a tunnel.
	Server string
	Err    error
}

func (e *HomeServerDownError) Error() string {
	return fmt.Sprintf("%s: %v", wire.HomeServerDownMessage(e.Server), e.Err)
}

func (e *HomeServerDownError) Unwrap() error { return e.Err }

// homeServerDown wraps err in a *HomeServerDownError when it says that
// the peer did not answer (refused, unreachable, timed out); other
// failures (a bad plan, a refused login) are returned as they are.
func homeServerDown(p *wire.Payload, err error) error {
	if err == nil || !unanswered(err) {
		return err
	}
	var server string
	if p != nil && p.Tunnel != nil {
		server = p.Tunnel.Endpoint
	}
	return &HomeServerDownError{Server: server, Err: err}
}

// unanswered reports whether err means a peer did not answer.
func unanswered(err error) bool {
	for _, target := range []error{
		context.DeadlineExceeded, os.ErrDeadlineExceeded,
		syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.ECONNRESET,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
