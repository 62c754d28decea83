package predict

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names the served artifacts on disk.
type Files struct {
	IPXE    string // path of ipxe.efi
	UKI     string // path of the UKI
	UKIName string // its name in the iPXE script's URL
	Cmdline string // the script's command line
}

// Cache predicts from Files and recomputes only when a file's size or
// modification time changes. It is safe for concurrent use.
type Cache struct {
	files Files

	mu   sync.Mutex
	key  [2]fileKey
	last *Prediction
}

type fileKey struct {
	size int64
	mod  time.Time
}

// NewCache returns a Cache for f.
func NewCache(f Files) *Cache { return &Cache{files: f} }

// Prediction returns the prediction for the files as they are now.
func (c *Cache) Prediction() (*Prediction, error) {
	var key [2]fileKey
	for i, path := range []string{c.files.IPXE, c.files.UKI} {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("predict: %w", err)
		}
		key[i] = fileKey{fi.Size(), fi.ModTime()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && key == c.key {
		return c.last, nil
	}
	ipxe, err := os.ReadFile(c.files.IPXE)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	image, err := os.ReadFile(c.files.UKI)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	p, err := Predict(Artifacts{IPXE: ipxe, UKI: image, UKIName: c.files.UKIName, Cmdline: c.files.Cmdline})
	if err != nil {
		return nil, err
	}
	c.key, c.last = key, p
	return p, nil
}
