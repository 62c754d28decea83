package kmod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// prober is the default Options.Load: it loads a module's modules.dep
// dependencies depth first, then the module's own file with
// finit_module(2). A built-in module (listed in modules.builtin, not in
// modules.dep) counts as loaded, and so does one the kernel already has
// (EEXIST). It finds a module's file through modules.dep, so file names
// that mix '-' and '_' (chacha-x86_64.ko) are no problem.
//
// It replaces u-root's kmodule, whose decompressors for .ko.gz, .ko.xz,
// .ko.zst and lz4 (about 300 KB of agent) the initramfs never needs:
// compressed files are handed to the kernel to decompress.
type prober struct {
	ix     *index
	dryRun func(path string) // Options.DryRun
	done   map[string]error  // module name -> outcome of its load
}

func newProber(ix *index, dryRun func(string)) *prober {
	return &prober{ix: ix, dryRun: dryRun, done: map[string]error{}}
}

func (p *prober) load(mod string) error {
	if err, ok := p.done[mod]; ok {
		return err
	}
	rel, ok := p.ix.files[mod]
	if !ok {
		if p.ix.present[mod] {
			return nil // built in
		}
		return fmt.Errorf("%w: %s", ErrNotFound, mod)
	}
	var err error
	for _, dep := range p.ix.deps[mod] {
		if err = p.load(dep); err != nil {
			err = fmt.Errorf("dependency %s: %w", dep, err)
			break
		}
	}
	if err == nil {
		err = p.loadFile(filepath.Join(p.ix.dir, rel))
	}
	p.done[mod] = err
	return err
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
	flags := 0
	if !strings.HasSuffix(name, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE // .ko.xz, .ko.zst, .ko.gz
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", name, err)
	}
	return nil
}
