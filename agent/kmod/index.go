package kmod

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// index is what the agent knows about the modules shipped for one kernel:
// the files of modules.dep and modules.builtin, the "pre:" soft
// dependencies of modules.softdep, the patterns of modules.alias and the
// builder's preload list.
type index struct {
	dir     string              // <root>/lib/modules/<kver>
	present map[string]bool     // module name -> listed in modules.dep or modules.builtin
	files   map[string]string   // module name -> its file in modules.dep, relative to dir
	deps    map[string][]string // module name -> its modules.dep dependencies (names)
	softPre map[string][]string // module name -> names to load first
	aliases []alias             // in file order
	preload []string
}

type alias struct {
	pattern string // fnmatch glob
	module  string
}

// normalize maps a module name or file to the kernel's canonical name:
// base name, no .ko[.gz|.xz|.zst] suffix, '-' replaced by '_'.
func normalize(name string) string {
	name = path.Base(name)
	if i := strings.Index(name, ".ko"); i >= 0 {
		name = name[:i]
	}
	return strings.ReplaceAll(name, "-", "_")
}

func readIndex(dir string) (*index, error) {
	ix := &index{
		dir:     dir,
		present: map[string]bool{},
		files:   map[string]string{},
		deps:    map[string][]string{},
		softPre: map[string][]string{},
	}
	readers := []struct {
		file     string
		required bool
		parse    func(io.Reader) error
	}{
		{"modules.dep", true, ix.parseDep},
		{"modules.builtin", false, ix.parseBuiltin},
		{"modules.softdep", false, ix.parseSoftdep},
		{"modules.alias", false, ix.parseAlias},
		{PreloadFile, false, ix.parsePreload},
	}
	for _, r := range readers {
		if err := parseFile(filepath.Join(dir, r.file), r.required, r.parse); err != nil {
			return nil, err
		}
	}
	return ix, nil
}

func parseFile(name string, required bool, parse func(io.Reader) error) error {
	f, err := os.Open(name)
	if os.IsNotExist(err) && !required {
		return nil
	} else if err != nil {
		return err
	}
	defer f.Close()
	if err := parse(f); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}

// eachLine calls fn with the fields of every non-empty, non-comment line.
func eachLine(r io.Reader, fn func(fields []string)) error {
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Fields(line))
	}
	return s.Err()
}

// parseDep reads "path/to/mod.ko: dep1.ko dep2.ko" lines.
func (ix *index) parseDep(r io.Reader) error {
	return eachLine(r, func(f []string) {
		file := strings.TrimSuffix(f[0], ":")
		mod := normalize(file)
		ix.present[mod] = true
		ix.files[mod] = file
		for _, dep := range f[1:] {
			ix.deps[mod] = append(ix.deps[mod], normalize(dep))
		}
	})
}

func (ix *index) parseBuiltin(r io.Reader) error {
	return eachLine(r, func(f []string) { ix.present[normalize(f[0])] = true })
}

// parseSoftdep reads "softdep MOD pre: A B post: C" lines; post
// dependencies are ignored (nothing in the boot path needs them).
func (ix *index) parseSoftdep(r io.Reader) error {
	return eachLine(r, func(f []string) {
		if len(f) < 3 || f[0] != "softdep" {
			return
		}
		mod, inPre := normalize(f[1]), false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				inPre = true
			case "post:":
				inPre = false
			default:
				if inPre {
					ix.softPre[mod] = append(ix.softPre[mod], w)
				}
			}
		}
	})
}

// parseAlias reads "alias PATTERN MODULE" lines.
func (ix *index) parseAlias(r io.Reader) error {
	return eachLine(r, func(f []string) {
		if len(f) == 3 && f[0] == "alias" {
			ix.aliases = append(ix.aliases, alias{pattern: f[1], module: normalize(f[2])})
		}
	})
}

func (ix *index) parsePreload(r io.Reader) error {
	return eachLine(r, func(f []string) { ix.preload = append(ix.preload, f[0]) })
}

// resolve returns the shipped modules that name designates: the module
// itself if present, else every present module with a matching alias (as
// modprobe does, e.g. "crc32c" -> crc32c_intel and crc32c_generic).
func (ix *index) resolve(name string) []string {
	if n := normalize(name); ix.present[n] {
		return []string{n}
	}
	var mods []string
	seen := map[string]bool{}
	for _, a := range ix.aliases {
		if ok, _ := path.Match(a.pattern, name); ok && ix.present[a.module] && !seen[a.module] {
			seen[a.module] = true
			mods = append(mods, a.module)
		}
	}
	return mods
}
