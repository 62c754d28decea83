package predict

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Files names the served artifacts on disk.
type Files struct {
	IPXE    string // path of ipxe.efi
	UKI     string // path of the UKI
	UKIName string // its name in the iPXE script's URL
	Cmdline string // the script's command line
	// SecureBootVars is a directory of the machines' Secure Boot
	// variables (PKFile, KEKFile, DBFile, DBXFile); empty: Secure Boot is
	// not predicted. Signers are the certificates (PEM or DER) that sign
	// the served images.
	SecureBootVars string
	Signers        []string
}

// Cache predicts from Files and recomputes only when a file's size or
// modification time changes. It is safe for concurrent use.
type Cache struct {
	files Files

	mu   sync.Mutex
	key  []fileKey
	last *Prediction
}

type fileKey struct {
	size int64
	mod  time.Time
}

// NewCache returns a Cache for f.
func NewCache(f Files) *Cache { return &Cache{files: f} }

// paths returns every file the prediction reads; optional ones may be
// missing.
func (f Files) paths() []string {
	paths := []string{f.IPXE, f.UKI}
	if f.SecureBootVars != "" {
		for _, name := range []string{PKFile, KEKFile, DBFile, DBXFile} {
			paths = append(paths, filepath.Join(f.SecureBootVars, name))
		}
		paths = append(paths, f.Signers...)
	}
	return paths
}

// Prediction returns the prediction for the files as they are now.
func (c *Cache) Prediction() (*Prediction, error) {
	var key []fileKey
	for _, path := range c.files.paths() {
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && filepath.Base(path) == DBXFile:
		case err != nil:
			return nil, fmt.Errorf("predict: %w", err)
		default:
			key = append(key, fileKey{fi.Size(), fi.ModTime()})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && slices.Equal(key, c.key) {
		return c.last, nil
	}
	a, err := c.files.read()
	if err != nil {
		return nil, err
	}
	p, err := Predict(a)
	if err != nil {
		return nil, err
	}
	c.key, c.last = key, p
	return p, nil
}

// read loads the artifacts f names.
func (f Files) read() (Artifacts, error) {
	a := Artifacts{UKIName: f.UKIName, Cmdline: f.Cmdline}
	var err error
	if a.IPXE, err = os.ReadFile(f.IPXE); err != nil {
		return a, fmt.Errorf("predict: %w", err)
	}
	if a.UKI, err = os.ReadFile(f.UKI); err != nil {
		return a, fmt.Errorf("predict: %w", err)
	}
	if f.SecureBootVars == "" {
		return a, nil
	}
	vars, err := ReadSecureBootVars(f.SecureBootVars)
	if err != nil {
		return a, err
	}
	a.SecureBoot = &vars
	for _, path := range f.Signers {
		c, err := ReadCertificate(path)
		if err != nil {
			return a, fmt.Errorf("predict: signer: %w", err)
		}
		a.Signers = append(a.Signers, c)
	}
	return a, nil
}

// ReadCertificate reads a certificate file, PEM or DER.
func ReadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
