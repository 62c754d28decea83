package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Server serves an admin API handler on a Unix listener, recording each
// connection's peer credentials for the handler's uid check.
// The zero value is not usable: Handler must be set.
type Server struct {
	// Handler is the API, usually from NewHandler.
	Handler http.Handler
	// Logger receives net/http's own errors; nil discards them.
	Logger hclog.Logger
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context ends; 0 means 5 seconds.
	ShutdownTimeout time.Duration
}

// Serve serves ln until ctx ends, then stops accepting, waits up to
// ShutdownTimeout for requests in flight and closes ln, which removes the
// socket file. It returns nil after such a shutdown, or the error that
// stopped it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	logger := s.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	hs := &http.Server{
		Handler:           s.Handler,
		ConnContext:       withPeer,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("admin api: %w", err)
	case <-ctx.Done():
	}
	timeout := s.ShutdownTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		hs.Close()
		return fmt.Errorf("admin api shutdown: %w", err)
	}
	return nil
}

type peerKey struct{}

// peer is what withPeer learned about a connection's other end.
type peer struct {
	uid uint32
	err error
}

// withPeer is http.Server.ConnContext: it records c's peer credentials.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uid, err := connPeerUID(c)
	return context.WithValue(ctx, peerKey{}, peer{uid: uid, err: err})
}

// peerUID returns the uid withPeer recorded in ctx.
func peerUID(ctx context.Context) (uint32, error) {
	p, ok := ctx.Value(peerKey{}).(peer)
	if !ok {
		return 0, errors.New("connection not accepted by api.Server")
	}
	return p.uid, p.err
}
