package basepeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/image"
)

// Bases is what Server serves; *image.Store implements it.
type Bases interface {
	List() ([]image.Image, error)
	BasePath(digest string) (string, error)
}

// Server serves this server's bases to its peers. Its zero value is not
// usable: use NewServer.
type Server struct {
	bases Bases
	tls   *tls.Config
	log   hclog.Logger
	mux   *http.ServeMux

	refused  atomic.Uint64 // TLS clients refused (counted, not logged)
	requests sync.WaitGroup
}

// NewServer returns a Server of bases presenting cert and admitting the
// servers whose certificates ca issued (ServerTLS). logger may be nil.
func NewServer(bases Bases, cert tls.Certificate, ca *x509.CertPool, logger hclog.Logger) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{bases: bases, log: logger.Named("basepeer"), mux: http.NewServeMux()}
	s.tls = ServerTLS(cert, ca, func() { s.refused.Add(1) })
	s.mux.HandleFunc("GET /v1/images", s.serveImages)
	s.mux.HandleFunc("GET /v1/bases/{digest}", s.serveBase)
	return s
}

// Refused is the number of clients refused at the TLS handshake.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// Serve answers peers on ln until ctx ends, then closes every connection
// and waits for the requests in progress to return.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0), // handshake failures are counted (Refused)
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		hs.Close()
		close(closed)
	})
	err := hs.Serve(tls.NewListener(ln, s.tls))
	if stop() {
		hs.Close() // Serve failed on its own
	} else {
		<-closed
	}
	s.requests.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	defer s.requests.Done()
	s.mux.ServeHTTP(w, r)
}

func (s *Server) serveImages(w http.ResponseWriter, r *http.Request) {
	ims, err := s.bases.List()
	if err != nil {
		s.log.Error("list images for a peer", "error", err)
		http.Error(w, "cannot list images", http.StatusInternalServerError)
		return
	}
	if ims == nil {
		ims = []image.Image{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ims)
}

func (s *Server) serveBase(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	path, err := s.bases.BasePath(digest)
	switch {
	case errors.Is(err, image.ErrBadName):
		http.Error(w, "bad digest", http.StatusBadRequest)
		return
	case err != nil:
		http.Error(w, "no such base", http.StatusNotFound)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, "no such base", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "cannot read base", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	start := time.Now()
	n, err := io.Copy(w, f)
	if err != nil {
		s.log.Warn("base sent in part", "digest", digest, "bytes", n, "error", err)
		return
	}
	s.log.Info("base sent to a peer", "digest", digest, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
}
