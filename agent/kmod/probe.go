package kmod

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// prober is the default Options.Load: u-root's kmodule prober, which loads
// a module with its modules.dep closure but finds the module's file from
// its name with every '_' or every '-' (chacha_x86_64 -> chacha-x86-64.ko
// or chacha_x86_64.ko). A file whose name mixes both, like
// chacha-x86_64.ko, poly1305-x86_64.ko and curve25519-x86_64.ko
// (WireGuard's accelerated crypto), is unreachable by name: for such a
// module prober probes its modules.dep dependencies and then loads its
// file itself.
type prober struct {
	kmod   *kmodule.Prober
	ix     *index
	dryRun func(path string) // Options.DryRun
}

func (p *prober) load(mod string) error {
	rel, ok := p.ix.files[mod]
	if !ok || !mixedName(rel) {
		return p.kmod.Probe(mod, "")
	}
	for _, dep := range p.ix.deps[mod] {
		if err := p.load(dep); err != nil {
			return fmt.Errorf("dependency %s: %w", dep, err)
		}
	}
	return p.loadFile(filepath.Join(p.ix.dir, rel))
}

// loadFile loads one module file; an already loaded module is success.
func (p *prober) loadFile(name string) error {
	if p.dryRun != nil {
		p.dryRun(name)
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := kmodule.FileInit(f, "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", name, err)
	}
	return nil
}

// mixedName reports whether a module file's base name (without .ko...)
// holds both '-' and '_', which kmodule cannot find by module name.
func mixedName(file string) bool {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.Contains(base, "-") && strings.Contains(base, "_")
}
