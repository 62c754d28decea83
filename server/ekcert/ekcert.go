// Package ekcert finds TPM endorsement-key (EK) certificates that the TPM
// does not carry in NV, and keeps them.
//
// Intel PTT before 11th-generation Core and AMD fTPMs hold no certificate;
// their vendors serve it from a URL computed from the EK public key (see
// IntelID and AMDIDs). A Source looks an EK's certificate up in its cache
// directory first, then asks the vendor services that are configured, and
// caches what they answer. An air-gapped site fills the cache instead, with
// `sealroot ek import` (Source.Put). Nothing is fetched unless a service URL
// is configured.
//
// Every certificate cached or returned certifies exactly the EK it was
// looked up for; whether it chains to a trusted manufacturer root is the
// caller's check (pki.VerifyEKCert).
//
// # Files
//
// The cache directory holds one DER file per EK, named by the hex SHA-256 of
// the EK's DER SubjectPublicKeyInfo with the extension .der.
package ekcert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/internal/atomicfile"
	"github.com/sealroot/sealroot/pki"
)

// ErrNotFound means neither the cache nor a configured service has the
// EK's certificate.
var ErrNotFound = errors.New("no EK certificate found")

// Limits.
const (
	maxAnswer    = 64 << 10         // a vendor service's answer
	missTTL      = time.Hour        // how long a miss is remembered
	maxMisses    = 10000            // remembered misses
	fetchTimeout = 10 * time.Second // default Config.Client timeout
)

// Config configures a Source.
type Config struct {
	// Dir is the cache directory; it is created (0700) when missing.
	// Required.
	Dir string
	// IntelURL and AMDURL are the base URLs of the vendors' EK
	// certificate services (IntelServiceURL, AMDServiceURL, or a mirror),
	// with a trailing slash. Empty (the default): that service is not
	// asked.
	IntelURL, AMDURL string
	// Client fetches; nil: a client with a 10 s timeout.
	Client *http.Client
	// Logger; nil discards.
	Logger hclog.Logger
}

// Source looks up EK certificates. It is safe for concurrent use.
type Source struct {
	cfg    Config
	client *http.Client
	logger hclog.Logger

	mu     sync.Mutex           // guards misses
	misses map[string]time.Time // cache key -> when the services had nothing
}

// New returns a Source over cfg.
func New(cfg Config) (*Source, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ekcert: no cache directory")
	}
	for _, base := range []string{cfg.IntelURL, cfg.AMDURL} {
		if base == "" {
			continue
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasSuffix(u.Path, "/") {
			return nil, fmt.Errorf("ekcert: service URL %q: want an http(s) URL ending in /", base)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ekcert: %w", err)
	}
	s := &Source{cfg: cfg, client: cfg.Client, logger: cfg.Logger, misses: make(map[string]time.Time)}
	if s.client == nil {
		s.client = &http.Client{Timeout: fetchTimeout}
	}
	if s.logger == nil {
		s.logger = hclog.NewNullLogger()
	}
	return s, nil
}

// key is the cache key of an EK: hex SHA-256 of its SubjectPublicKeyInfo.
func key(ek crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(ek)
	if err != nil {
		return "", fmt.Errorf("EK public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:]), nil
}

// Lookup returns the DER certificate of ek and where it came from
// ("cache", "intel", "amd"), or ErrNotFound.
func (s *Source) Lookup(ctx context.Context, ek crypto.PublicKey) ([]byte, string, error) {
	k, err := key(ek)
	if err != nil {
		return nil, "", err
	}
	der, err := os.ReadFile(s.path(k))
	switch {
	case err == nil:
		return der, "cache", nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, "", fmt.Errorf("read cached EK certificate: %w", err)
	}
	if s.recentMiss(k) {
		return nil, "", ErrNotFound
	}
	cert, from, err := s.fetch(ctx, ek)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			s.miss(k)
		}
		return nil, "", err
	}
	if err := s.Put(cert); err != nil {
		return nil, "", err
	}
	s.logger.Info("fetched EK certificate", "from", from, "subject", cert.Subject.String())
	return cert.Raw, from, nil
}

// Put caches a certificate under its public key.
func (s *Source) Put(cert *x509.Certificate) error {
	k, err := key(cert.PublicKey)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.path(k), cert.Raw, 0o600); err != nil {
		return fmt.Errorf("cache EK certificate: %w", err)
	}
	s.mu.Lock()
	delete(s.misses, k)
	s.mu.Unlock()
	return nil
}

func (s *Source) path(k string) string { return filepath.Join(s.cfg.Dir, k+".der") }

func (s *Source) recentMiss(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.misses[k]
	return ok && time.Since(at) < missTTL
}

func (s *Source) miss(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.misses) >= maxMisses {
		clear(s.misses)
	}
	s.misses[k] = time.Now()
}

// fetch asks the configured services, Intel first, for ek's certificate
// and returns the first one that certifies ek.
func (s *Source) fetch(ctx context.Context, ek crypto.PublicKey) (*x509.Certificate, string, error) {
	type try struct{ from, url string }
	var tries []try
	if s.cfg.IntelURL != "" {
		id, err := IntelID(ek)
		if err != nil {
			return nil, "", err
		}
		tries = append(tries, try{"intel", s.cfg.IntelURL + id})
	}
	if s.cfg.AMDURL != "" {
		ids, err := AMDIDs(ek)
		if err != nil {
			return nil, "", err
		}
		for _, id := range ids {
			tries = append(tries, try{"amd", s.cfg.AMDURL + id})
		}
	}
	var errs []error
	for _, t := range tries {
		cert, err := s.get(ctx, t.url)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err == nil && !publicKeyEqual(cert.PublicKey, ek) {
			err = fmt.Errorf("%s answered a certificate for another key (%s)", t.from, cert.Subject)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return cert, t.from, nil
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("fetch EK certificate: %w", errors.Join(errs...))
	}
	return nil, "", ErrNotFound
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// get fetches one URL; 404 is ErrNotFound.
func (s *Source) get(ctx context.Context, url string) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch EK certificate: %w", err)
	}
	rsp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch EK certificate: %w", err)
	}
	defer rsp.Body.Close()
	switch {
	case rsp.StatusCode == http.StatusNotFound:
		return nil, ErrNotFound
	case rsp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch EK certificate: %s: %s", req.URL.Host, rsp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(rsp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("fetch EK certificate: %w", err)
	}
	if len(body) > maxAnswer {
		return nil, fmt.Errorf("fetch EK certificate: %s: answer over %d bytes", req.URL.Host, maxAnswer)
	}
	return ParseAnswer(body)
}

// ParseAnswer decodes a vendor service's answer: Intel's JSON object whose
// "certificate" field is the DER certificate in base64url (padded or not),
// or a certificate in DER (AMD) or PEM.
func ParseAnswer(body []byte) (*x509.Certificate, error) {
	der := body
	switch trimmed := bytes.TrimSpace(body); {
	case bytes.HasPrefix(trimmed, []byte("{")):
		var answer struct {
			Certificate string `json:"certificate"`
		}
		if err := json.Unmarshal(trimmed, &answer); err != nil {
			return nil, fmt.Errorf("EK certificate service answer: %w", err)
		}
		b, err := base64.RawURLEncoding.DecodeString(string(bytes.TrimRight([]byte(answer.Certificate), "=")))
		if err != nil {
			return nil, fmt.Errorf("EK certificate service answer: certificate field: %w", err)
		}
		der = b
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN")):
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, errors.New("EK certificate service answer: bad PEM")
		}
		der = block.Bytes
	}
	return pki.ParseEKCert(der)
}
