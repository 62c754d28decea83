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

// index is index.json: image names to their versions, oldest first.
type index struct {
	Versions map[string][]Image `json:"versions"`
	// Last is the highest version each name has had, so that a removed
	// version's number is not given to other content.
	Last map[string]int `json:"last,omitempty"`
	// Images is the index before versions: one image per name, read as
	// version 1 and not written.
	Images map[string]Image `json:"images,omitempty"`
}

// find returns version of name, the latest for version 0.
func (idx *index) find(name string, version int) (*Image, error) {
	vs := idx.Versions[name]
	if len(vs) > 0 && version == 0 {
		im := vs[len(vs)-1]
		return &im, nil
	}
	for _, im := range vs {
		if im.Version == version {
			return &im, nil
		}
	}
	if version == 0 {
		return nil, fmt.Errorf("image: %q: %w", name, ErrNotFound)
	}
	return nil, fmt.Errorf("image: %s@v%d: %w", name, version, ErrNotFound)
}

// add appends im to its name's versions as the next version.
func (idx *index) add(im Image) Image {
	im.Version = idx.last(im.Name) + 1
	idx.Versions[im.Name] = append(idx.Versions[im.Name], im)
	idx.setLast(im.Name, im.Version)
	return im
}

func (idx *index) last(name string) int {
	n := idx.Last[name]
	for _, im := range idx.Versions[name] {
		n = max(n, im.Version)
	}
	return n
}

func (idx *index) setLast(name string, v int) {
	if v > idx.Last[name] {
		idx.Last[name] = v
	}
}

// readIndex is called with mu held.
func (s *Store) readIndex() (*index, error) {
	idx := &index{Versions: map[string][]Image{}, Last: map[string]int{}}
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
	if idx.Versions == nil {
		idx.Versions = map[string][]Image{}
	}
	if idx.Last == nil {
		idx.Last = map[string]int{}
	}
	for name, im := range idx.Images {
		if len(idx.Versions[name]) == 0 {
			im.Version = 1
			idx.Versions[name] = []Image{im}
			idx.setLast(name, 1)
		}
	}
	idx.Images = nil
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
