// Package preload reads and writes sealroot.preload, the kernel module load
// order that the initramfs builder records for the agent.
//
// The file lives in /lib/modules/<kver>/ next to modules.dep. Each line is
// a module name and its path relative to that directory, separated by one
// space; lines starting with '#' are comments. Modules are listed so that
// every module follows its hard dependencies and its "pre:" soft
// dependencies, so loading the paths in order with init_module(2) (for
// example u-root's kmodule.FileInit, treating EEXIST as success) needs no
// further dependency resolution. Built-in modules are not listed.
//
// The package is std-only so the agent can import it cheaply.
package preload

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// FileName is the name of the preload file inside /lib/modules/<kver>/.
const FileName = "sealroot.preload"

// MaxEntries bounds the number of entries Parse accepts.
const MaxEntries = 4096

// ErrMalformed reports a preload file that does not follow the format.
var ErrMalformed = errors.New("preload: malformed file")

// Entry is one module to load.
type Entry struct {
	Name string // module name with '_' for '-', e.g. "crc32c_intel"
	Path string // relative to /lib/modules/<kver>/, e.g. "kernel/arch/x86/crypto/crc32c-intel.ko"
}

// Write writes entries in the preload format.
func Write(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# sealroot module load order: name path (relative to this directory)")
	for _, e := range entries {
		if err := e.validate(); err != nil {
			return err
		}
		fmt.Fprintf(bw, "%s %s\n", e.Name, e.Path)
	}
	return bw.Flush()
}

// Parse reads a preload file written by Write.
func Parse(r io.Reader) ([]Entry, error) {
	var entries []Entry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: line %d: want \"name path\"", ErrMalformed, n)
		}
		e := Entry{Name: f[0], Path: f[1]}
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(entries) == MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrMalformed, MaxEntries)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	return entries, nil
}

// validate rejects names and paths that could escape the module directory
// or break the line format.
func (e Entry) validate() error {
	if e.Name == "" || strings.ContainsAny(e.Name, " \t\n/") {
		return fmt.Errorf("%w: bad module name %q", ErrMalformed, e.Name)
	}
	if e.Path == "" || strings.ContainsAny(e.Path, " \t\n") || path.IsAbs(e.Path) ||
		path.Clean(e.Path) != e.Path || e.Path == ".." || strings.HasPrefix(e.Path, "../") {
		return fmt.Errorf("%w: bad module path %q", ErrMalformed, e.Path)
	}
	return nil
}
