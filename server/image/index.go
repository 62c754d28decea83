package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sealroot/sealroot/internal/atomicfile"
)

// index is index.json: image names to images.
type index struct {
	Images map[string]Image `json:"images"`
}

// readIndex is called with mu held.
func (s *Store) readIndex() (*index, error) {
	idx := &index{Images: map[string]Image{}}
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image: read index: %w", err)
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("image: read index: %w", err)
	}
	if idx.Images == nil {
		idx.Images = map[string]Image{}
	}
	return idx, nil
}

// writeIndex replaces index.json atomically: write, fsync, rename, fsync
// the directory. Called with mu held.
func (s *Store) writeIndex(idx *index) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, "index.json"), b, 0o600); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}
