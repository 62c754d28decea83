// Package kmod loads the kernel modules the agent needs, as modprobe would
// without a modprobe in the initramfs.
//
// Each module is loaded after its modules.dep closure (finit_module(2),
// built-ins and loaded modules skipped). On top of that, Load
//
//   - first loads the builder's preload list (PreloadFile, one module per
//     line, in order): modules the kernel would request_module() itself,
//     which it cannot do in an initramfs without modprobe;
//   - loads the "pre:" soft dependencies of modules.softdep before each
//     module (ext4 needs crc32c, for example);
//   - resolves names through modules.alias (crc32c -> crc32c_intel,
//     crc32c_generic);
//   - loads drivers for network controllers found on the PCI bus, by matching
//     /sys/bus/pci/devices/*/modalias against modules.alias.
//   - finds files through modules.dep, so names that mix '-' and '_'
//     (chacha-x86_64.ko) load too.
//
// Modules the configuration asks for are required: a missing or failing one
// fails Load. Everything else is optional and only reported as a warning.
package kmod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// PreloadFile is the name, in /lib/modules/<kver>, of the builder's list of
// modules to load first.
const PreloadFile = "sealroot.preload"

// ErrNotFound is wrapped by the failure of a module that is neither shipped
// nor an alias of a shipped module.
var ErrNotFound = errors.New("module not found")

// Options configure Load. The zero value loads for the running kernel from
// the real root.
type Options struct {
	// RootDir holds lib/modules/<kver>; default "/".
	RootDir string
	// KVer is the kernel release; default uname -r.
	KVer string
	// SysDir is where sysfs is mounted; default "/sys".
	SysDir string
	// Load loads one module, named as in modules.dep, with its modules.dep
	// closure. Default: finit_module(2) of each file of the closure,
	// skipping built-in modules and treating EEXIST as success.
	Load func(name string) error
	// DryRun, when set and Load is nil, reports each module file the
	// default Load would load instead of loading it.
	DryRun func(path string)
	// Logger defaults to a null logger.
	Logger hclog.Logger
}

// Failure is one module that did not load.
type Failure struct {
	Module string
	Err    error
}

func (f Failure) Error() string { return fmt.Sprintf("module %s: %v", f.Module, f.Err) }

func (f Failure) Unwrap() error { return f.Err }

// Result reports what Load did.
type Result struct {
	Loaded   []string  // modules loaded or already present, in load order
	Failed   []Failure // required modules that failed
	Warnings []Failure // optional modules that were missing or failed
}

// Load loads the preload list, the required modules (with soft
// dependencies and alias resolution) and the drivers of PCI network
// controllers. It returns an error joining every required failure; the
// Result is valid either way.
//
// An initramfs without lib/modules/<kver>/modules.dep (a kernel with every
// driver built in) is fine as long as no module is required.
func Load(opts Options, required []string) (*Result, error) {
	l, err := newLoader(opts)
	if errors.Is(err, os.ErrNotExist) && len(required) == 0 {
		return &Result{}, nil
	}
	if err != nil {
		return nil, err
	}
	for _, m := range l.ix.preload {
		l.load(m, false)
	}
	for _, m := range required {
		l.load(m, true)
	}
	for _, m := range l.nicDrivers() {
		l.load(m, false)
	}
	if len(l.res.Failed) == 0 {
		return &l.res, nil
	}
	errs := make([]error, len(l.res.Failed))
	for i, f := range l.res.Failed {
		errs[i] = f
	}
	return &l.res, errors.Join(errs...)
}

type loader struct {
	opts Options
	ix   *index
	log  hclog.Logger
	done map[string]error // canonical module name -> result of its load
	res  Result
}

func newLoader(opts Options) (*loader, error) {
	if opts.RootDir == "" {
		opts.RootDir = "/"
	}
	if opts.SysDir == "" {
		opts.SysDir = "/sys"
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.KVer == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return nil, fmt.Errorf("uname: %w", err)
		}
		opts.KVer = unix.ByteSliceToString(u.Release[:])
	}
	ix, err := readIndex(filepath.Join(opts.RootDir, "lib/modules", opts.KVer))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	if opts.Load == nil {
		opts.Load = newProber(ix, opts.DryRun).load
	}
	return &loader{opts: opts, ix: ix, log: opts.Logger.Named("kmod"), done: map[string]error{}}, nil
}

// load loads name (a module or an alias) after its soft dependencies, and
// records the outcome.
func (l *loader) load(name string, required bool) {
	err := l.loadName(name, nil)
	switch {
	case err == nil:
	case required:
		l.res.Failed = append(l.res.Failed, Failure{name, err})
	default:
		l.log.Warn("optional module not loaded", "module", name, "error", err)
		l.res.Warnings = append(l.res.Warnings, Failure{name, err})
	}
}

// loadName resolves name and loads every module it designates; it fails if
// none loads. stack guards against softdep cycles.
func (l *loader) loadName(name string, stack []string) error {
	mods := l.ix.resolve(name)
	if len(mods) == 0 {
		return ErrNotFound
	}
	var errs []error
	for _, m := range mods {
		if err := l.loadModule(m, stack); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(mods) {
		return errors.Join(errs...)
	}
	return nil
}

func (l *loader) loadModule(mod string, stack []string) error {
	if err, ok := l.done[mod]; ok {
		return err
	}
	for _, s := range stack {
		if s == mod {
			return fmt.Errorf("softdep cycle %s -> %s", strings.Join(stack, " -> "), mod)
		}
	}
	for _, pre := range l.ix.softPre[mod] {
		if err := l.loadName(pre, append(stack, mod)); err != nil {
			// modprobe ignores failing soft dependencies too.
			l.log.Warn("soft dependency not loaded", "module", mod, "softdep", pre, "error", err)
			l.res.Warnings = append(l.res.Warnings, Failure{pre, err})
		}
	}
	err := l.opts.Load(mod)
	if err != nil {
		err = fmt.Errorf("load %s: %w", mod, err)
	} else {
		l.res.Loaded = append(l.res.Loaded, mod)
		l.log.Debug("loaded", "module", mod)
	}
	l.done[mod] = err
	return err
}
