package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealroot/sealroot/initramfs/preload"
)

// ErrModuleNotFound reports a wanted module that is neither a module file,
// a built-in, nor an alias of one.
var ErrModuleNotFound = errors.New("initramfs: module not found")

// closure is the set of modules to ship, in load order.
type closure struct {
	order      []string // module names; deps and pre-softdeps come first
	builtin    []string // wanted names satisfied by the kernel image
	unresolved []string // soft dependency targets found nowhere ("mod: target")
}

// closureOf computes the load order of wanted and everything they need:
// hard dependencies, "pre:" soft dependencies before and "post:" soft
// dependencies after each module. A missing wanted module is an error; a
// missing soft dependency is recorded (modprobe ignores those too).
func (ix *modIndex) closureOf(wanted []string) (*closure, error) {
	c := &closure{}
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(name string)
	visitTarget := func(from, target string) {
		mods, builtin, err := ix.resolve(target)
		if err != nil && !builtin {
			c.unresolved = append(c.unresolved, from+": "+target)
		}
		for _, m := range mods {
			visit(m)
		}
	}
	visit = func(name string) {
		if state[name] != 0 {
			return // done, or a dependency cycle through soft deps
		}
		state[name] = 1
		for _, t := range ix.softPre[name] {
			visitTarget(name, t)
		}
		for _, d := range ix.deps[name] {
			visit(d)
		}
		state[name] = 2
		c.order = append(c.order, name)
		for _, t := range ix.softPost[name] {
			visitTarget(name, t)
		}
	}
	for _, w := range wanted {
		mods, builtin, err := ix.resolve(w)
		if builtin {
			c.builtin = append(c.builtin, w)
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, m := range mods {
			visit(m)
		}
	}
	return c, nil
}

// preloadEntries returns the load order in the preload file format.
func (ix *modIndex) preloadEntries(c *closure) []preload.Entry {
	entries := make([]preload.Entry, 0, len(c.order))
	for _, m := range c.order {
		entries = append(entries, preload.Entry{Name: m, Path: ix.path[m]})
	}
	return entries
}

// trimmedFiles returns the modules.* index files restricted to the shipped
// modules, keyed by file name. Lines are kept verbatim and in file order so
// the result is consistent with the full index for the modules it covers.
// modules.builtin is copied whole: the agent's kmodule treats built-ins as
// loaded.
func (ix *modIndex) trimmedFiles(c *closure) (map[string][]byte, error) {
	shipped := map[string]bool{}
	for _, m := range c.order {
		shipped[m] = true
	}
	keep := map[string]func(f []string) bool{
		"modules.dep": func(f []string) bool {
			return shipped[modName(strings.TrimSuffix(f[0], ":"))]
		},
		"modules.softdep": func(f []string) bool {
			return len(f) > 1 && f[0] == "softdep" && shipped[normalize(f[1])]
		},
		"modules.alias": func(f []string) bool {
			return len(f) == 3 && f[0] == "alias" && shipped[normalize(f[2])]
		},
		"modules.order":   func(f []string) bool { return shipped[modName(f[0])] },
		"modules.builtin": func([]string) bool { return true },
	}
	out := map[string][]byte{}
	for file, ok := range keep {
		b, err := os.ReadFile(filepath.Join(ix.dir, file))
		if errors.Is(err, os.ErrNotExist) && file != "modules.dep" {
			continue
		}
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		err = eachLine(b, func(line string) error {
			if ok(strings.Fields(line)) {
				buf.WriteString(line + "\n")
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out[file] = buf.Bytes()
	}
	return out, nil
}
