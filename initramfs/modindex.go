package initramfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNoModulesDep reports a module directory without modules.dep; run
// `depmod -b <root> <kver>` (FetchKernel does).
var ErrNoModulesDep = errors.New("initramfs: modules.dep missing")

// modIndex is the module metadata of one kernel version, read from the
// text files depmod writes into lib/modules/<kver>/.
type modIndex struct {
	dir      string              // absolute lib/modules/<kver>
	path     map[string]string   // module name -> path relative to dir
	deps     map[string][]string // module name -> hard dependency names
	softPre  map[string][]string // module name -> "pre:" targets (names or aliases)
	softPost map[string][]string // module name -> "post:" targets
	aliases  []alias             // modules.alias, in file order
	builtin  map[string]bool     // modules.builtin names
	bAliases []alias             // aliases of built-in modules
}

// alias maps a pattern (possibly with fnmatch wildcards) to a module.
type alias struct{ pattern, module string }

// modName returns the kernel's name for a module file: base name without
// .ko[.gz|.xz|.zst], '-' as '_'.
func modName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		b = strings.TrimSuffix(b, ext)
	}
	return normalize(strings.TrimSuffix(b, ".ko"))
}

// normalize maps '-' to '_' as the kernel and kmod do for module names.
func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleDir returns the lib/modules/<kver> directory under root.
func moduleDir(root, kver string) (string, error) {
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		dir := filepath.Join(root, d, kver)
		if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: %s (kernel %s)", ErrNoModulesDep, root, kver)
}

// loadModIndex reads modules.dep (required), modules.softdep,
// modules.alias, modules.builtin and modules.builtin.modinfo (optional).
func loadModIndex(root, kver string) (*modIndex, error) {
	dir, err := moduleDir(root, kver)
	if err != nil {
		return nil, err
	}
	ix := &modIndex{
		dir:      dir,
		path:     map[string]string{},
		deps:     map[string][]string{},
		softPre:  map[string][]string{},
		softPost: map[string][]string{},
		builtin:  map[string]bool{},
	}
	parsers := []struct {
		file     string
		required bool
		parse    func([]byte) error
	}{
		{"modules.dep", true, ix.parseDep},
		{"modules.softdep", false, ix.parseSoftdep},
		{"modules.alias", false, ix.parseAlias},
		{"modules.builtin", false, ix.parseBuiltin},
		{"modules.builtin.modinfo", false, ix.parseBuiltinModinfo},
	}
	for _, p := range parsers {
		b, err := os.ReadFile(filepath.Join(dir, p.file))
		if errors.Is(err, os.ErrNotExist) && !p.required {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := p.parse(b); err != nil {
			return nil, fmt.Errorf("%s: %w", p.file, err)
		}
	}
	return ix, nil
}

// parseDep reads "kernel/a.ko: kernel/b.ko kernel/c.ko" lines.
func (ix *modIndex) parseDep(b []byte) error {
	return eachLine(b, func(line string) error {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("bad line %q", line)
		}
		name := modName(mod)
		ix.path[name] = strings.TrimSpace(mod)
		for _, d := range strings.Fields(deps) {
			ix.deps[name] = append(ix.deps[name], modName(d))
		}
		return nil
	})
}

// parseSoftdep reads "softdep MOD pre: A B post: C" lines. Words before a
// "pre:" or "post:" marker are ignored, as modprobe does.
func (ix *modIndex) parseSoftdep(b []byte) error {
	return eachLine(b, func(line string) error {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return nil
		}
		name := normalize(f[1])
		var dst map[string][]string
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				dst = ix.softPre
			case "post:":
				dst = ix.softPost
			default:
				if dst != nil {
					dst[name] = append(dst[name], w)
				}
			}
		}
		return nil
	})
}

// parseAlias reads "alias PATTERN MODULE" lines.
func (ix *modIndex) parseAlias(b []byte) error {
	return eachLine(b, func(line string) error {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" {
			ix.aliases = append(ix.aliases, alias{f[1], normalize(f[2])})
		}
		return nil
	})
}

// parseBuiltin reads the paths of built-in modules.
func (ix *modIndex) parseBuiltin(b []byte) error {
	return eachLine(b, func(line string) error {
		ix.builtin[modName(line)] = true
		return nil
	})
}

// parseBuiltinModinfo reads NUL-separated "mod.key=value" records and keeps
// the aliases of built-in modules (e.g. "crc32_generic.alias=crc32").
func (ix *modIndex) parseBuiltinModinfo(b []byte) error {
	for _, rec := range bytes.Split(b, []byte{0}) {
		key, val, ok := strings.Cut(string(rec), "=")
		mod, field, ok2 := strings.Cut(key, ".")
		if ok && ok2 && field == "alias" {
			ix.bAliases = append(ix.bAliases, alias{val, normalize(mod)})
		}
	}
	return nil
}

// eachLine calls fn for every non-empty, non-comment line of b.
func eachLine(b []byte, fn func(string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// resolve maps a module name or alias to loadable modules. builtin reports
// that name is satisfied by the kernel image itself. An exact alias match
// wins over wildcard patterns; all modules matching the winning kind are
// returned (e.g. crypto-crc32c: crc32c_intel and crc32c_generic).
func (ix *modIndex) resolve(name string) (mods []string, builtin bool, err error) {
	n := normalize(name)
	if _, ok := ix.path[n]; ok {
		return []string{n}, false, nil
	}
	if ix.builtin[n] {
		return nil, true, nil
	}
	for _, exact := range []bool{true, false} {
		mods = matchAliases(ix.aliases, n, exact)
		if len(mods) > 0 {
			return mods, false, nil
		}
		if len(matchAliases(ix.bAliases, n, exact)) > 0 {
			return nil, true, nil
		}
	}
	return nil, false, fmt.Errorf("%w: %q", ErrModuleNotFound, name)
}

// matchAliases returns the distinct modules whose alias matches name, in
// file order. Patterns and name are compared with '-' normalized to '_'.
func matchAliases(aliases []alias, name string, exact bool) []string {
	var mods []string
	seen := map[string]bool{}
	for _, a := range aliases {
		p := normalize(a.pattern)
		var ok bool
		if exact {
			ok = p == name
		} else if strings.ContainsAny(p, "*?[") {
			ok, _ = path.Match(p, name)
		}
		if ok && !seen[a.module] {
			seen[a.module] = true
			mods = append(mods, a.module)
		}
	}
	return mods
}
