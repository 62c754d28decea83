//go:build !linux

package api

import (
	"errors"
	"net"
)

// connPeerUID fails: peer credentials are only read on Linux.
func connPeerUID(net.Conn) (uint32, error) {
	return 0, errors.New("peer credentials: not supported on this OS")
}
