package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/sealroot/sealroot/wire"
)

// Bucket layout of files (created on first use):
//
//	files  "machine:<id>" | "group:<name>" -> bucket: <path> -> JSON File
var bucketFiles = []byte("files")

var _ FileStore = (*DB)(nil)

func (o FileOwner) key() ([]byte, error) {
	switch {
	case o.Machine != "" && o.Group == "":
		if err := checkID(o.Machine); err != nil {
			return nil, err
		}
		return []byte("machine:" + o.Machine), nil
	case o.Group != "" && o.Machine == "":
		if err := checkGroupName(o.Group); err != nil {
			return nil, err
		}
		return []byte("group:" + o.Group), nil
	}
	return nil, fmt.Errorf("file owner: want exactly one of machine and group: %w", ErrNotFound)
}

func (o FileOwner) String() string {
	if o.Group != "" {
		return "group " + o.Group
	}
	return "machine " + o.Machine
}

// ownerExists fails with ErrNotFound unless o's record exists.
func (o FileOwner) exists(tx *bolt.Tx) error {
	var v []byte
	if o.Group != "" {
		v = tx.Bucket(bucketGroups).Get([]byte(o.Group))
	} else {
		v = tx.Bucket(bucketMachines).Get([]byte(o.Machine))
	}
	if v == nil {
		return fmt.Errorf("%s: %w", o, ErrNotFound)
	}
	return nil
}

// PutFile implements FileStore. The limits are decided against the
// owner's files inside the transaction that stores f.
func (db *DB) PutFile(ctx context.Context, owner FileOwner, f *File) error {
	key, err := owner.key()
	if err != nil {
		return err
	}
	if err := checkFile(f); err != nil {
		return fmt.Errorf("put file of %s: %w", owner, err)
	}
	v, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		if err := owner.exists(tx); err != nil {
			return fmt.Errorf("put file %s: %w", f.Path, err)
		}
		top, err := tx.CreateBucketIfNotExists(bucketFiles)
		if err != nil {
			return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
		}
		b, err := top.CreateBucketIfNotExists(key)
		if err != nil {
			return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
		}
		if err := checkLimits(b, f); err != nil {
			return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
		}
		if err := b.Put([]byte(f.Path), v); err != nil {
			return fmt.Errorf("put file %s of %s: %w", f.Path, owner, err)
		}
		return owner.bumpVersions(db, tx)
	})
}

// bumpVersions gives the machines whose releases carry o's files a new
// Version: the machine, or every member of the group.
func (o FileOwner) bumpVersions(db *DB, tx *bolt.Tx) error {
	ids := []string{o.Machine}
	if o.Group != "" {
		var err error
		if ids, err = groupMembers(tx, o.Group); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := db.bumpVersion(tx, id); err != nil {
			return fmt.Errorf("files of %s: %w", o, err)
		}
	}
	return nil
}

// checkLimits reports whether b can take f, replacing any file at f.Path.
func checkLimits(b *bolt.Bucket, f *File) error {
	count, total := 1, len(f.Content)
	err := b.ForEach(func(k, v []byte) error {
		p := string(k)
		if p == f.Path {
			return nil
		}
		if strings.HasPrefix(f.Path, p+"/") || strings.HasPrefix(p, f.Path+"/") {
			return fmt.Errorf("clashes with file %s (one would be a directory of the other): %w", p, ErrFilesLimit)
		}
		old, err := decodeFile(v)
		if err != nil {
			return err
		}
		count++
		total += len(old.Content)
		return nil
	})
	switch {
	case err != nil:
		return err
	case count > wire.MaxFiles:
		return fmt.Errorf("%d files, at most %d: %w", count, wire.MaxFiles, ErrFilesLimit)
	case total > wire.MaxFilesTotal:
		return fmt.Errorf("%d bytes of files, at most %d: %w", total, wire.MaxFilesTotal, ErrFilesLimit)
	}
	return nil
}

// Files implements FileStore.
func (db *DB) Files(ctx context.Context, owner FileOwner) ([]*File, error) {
	key, err := owner.key()
	if err != nil {
		return nil, err
	}
	var out []*File
	err = db.view(ctx, func(tx *bolt.Tx) error {
		if err := owner.exists(tx); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		b := filesBucket(tx, key)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			f, err := decodeFile(v)
			if err != nil {
				return err
			}
			out = append(out, f)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteFile implements FileStore.
func (db *DB) DeleteFile(ctx context.Context, owner FileOwner, p string) error {
	key, err := owner.key()
	if err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := filesBucket(tx, key)
		if b == nil || p == "" || b.Get([]byte(p)) == nil {
			return fmt.Errorf("delete file %s of %s: %w", p, owner, ErrNotFound)
		}
		if err := b.Delete([]byte(p)); err != nil {
			return fmt.Errorf("delete file %s of %s: %w", p, owner, err)
		}
		return owner.bumpVersions(db, tx)
	})
}

func filesBucket(tx *bolt.Tx, key []byte) *bolt.Bucket {
	top := tx.Bucket(bucketFiles)
	if top == nil {
		return nil
	}
	return top.Bucket(key)
}

// deleteFiles removes all of owner's files, inside the transaction that
// removes the owner.
func deleteFiles(tx *bolt.Tx, owner FileOwner) error {
	key, err := owner.key()
	if err != nil {
		return err
	}
	if filesBucket(tx, key) == nil {
		return nil
	}
	if err := tx.Bucket(bucketFiles).DeleteBucket(key); err != nil {
		return fmt.Errorf("delete files of %s: %w", owner, err)
	}
	return nil
}

func decodeFile(v []byte) (*File, error) {
	f := new(File)
	if err := json.Unmarshal(v, f); err != nil {
		return nil, fmt.Errorf("%w: file record: %v", ErrCorrupt, err)
	}
	if path.Clean(f.Path) != f.Path {
		return nil, fmt.Errorf("%w: file record path %q", ErrCorrupt, f.Path)
	}
	return f, nil
}
