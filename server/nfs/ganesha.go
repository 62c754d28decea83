package nfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sealroot/sealroot/internal/atomicfile"

	"github.com/hashicorp/go-hclog"
)

// ErrClosed means the Ganesha was closed.
var ErrClosed = errors.New("nfs-ganesha supervisor closed")

// GaneshaConfig configures a supervised ganesha.nfsd. The zero value of
// every field but Dir works.
type GaneshaConfig struct {
	// Dir holds the instance's state: ganesha.conf, exports.conf,
	// ganesha.pid and recovery/. Required, absolute.
	Dir string
	// Config is the main configuration. ExportsFile defaults to
	// Dir/exports.conf, RecoveryRoot to Dir/recovery.
	Config Config
	// Binary is the daemon. Default "ganesha.nfsd".
	Binary string
	// Command builds the daemon's command line. Default exec.Command:
	// ganesha runs in the caller's network and mount namespaces. To run
	// it in another network namespace, wrap it in `nsenter --net=<path>`
	// (never `ip netns exec`, which gives it its own mount namespace).
	Command func(name string, args ...string) *exec.Cmd
	// Logger receives ganesha's log. Default: discard.
	Logger hclog.Logger
	// MinBackoff and MaxBackoff bound the delay before a restart, which
	// doubles after each quick death. Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// StopTimeout is how long Close waits after SIGTERM before SIGKILL.
	// Default 10s.
	StopTimeout time.Duration
}

// Ganesha is a supervised ganesha.nfsd: restarted with backoff whenever
// it dies, serving the last exports given to SetExports.
type Ganesha struct {
	cfg      GaneshaConfig
	confPath string
	log      hclog.Logger
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the supervisor ends
	once     sync.Once
	restarts atomic.Uint64
	reloads  atomic.Uint64

	mu      sync.Mutex
	proc    *os.Process   // the running daemon, nil between runs
	ready   bool          // proc logged NFS SERVER INITIALIZED
	gen     uint64        // version of the exports file
	started uint64        // gen when proc was started
	hupGen  uint64        // gen at the last SIGHUP
	hupAt   time.Time     // when it was sent; one reload at a time
	served  uint64        // gen the daemon is known to serve
	changed chan struct{} // closed and replaced when served or proc change
}

// StartGanesha writes the configuration with exports, starts ganesha and
// waits until it serves them or ctx ends. The daemon keeps running, and
// is restarted if it dies, until Close.
func StartGanesha(ctx context.Context, cfg GaneshaConfig, exports []Export) (*Ganesha, error) {
	g, err := newGanesha(cfg)
	if err != nil {
		return nil, err
	}
	if err := g.writeExports(exports); err != nil {
		return nil, err
	}
	go g.supervise()
	if err := g.waitServed(ctx, g.gen); err != nil {
		return nil, errors.Join(fmt.Errorf("nfs-ganesha did not start: %w", err), g.Close())
	}
	return g, nil
}

func newGanesha(cfg GaneshaConfig) (*Ganesha, error) {
	if err := checkPath("GaneshaConfig.Dir", cfg.Dir); err != nil {
		return nil, err
	}
	setDefault(&cfg.Config.ExportsFile, filepath.Join(cfg.Dir, "exports.conf"))
	setDefault(&cfg.Config.RecoveryRoot, filepath.Join(cfg.Dir, "recovery"))
	setDefault(&cfg.Binary, "ganesha.nfsd")
	if cfg.Command == nil {
		cfg.Command = exec.Command
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	setDefault(&cfg.MinBackoff, 200*time.Millisecond)
	setDefault(&cfg.MaxBackoff, 30*time.Second)
	setDefault(&cfg.StopTimeout, 10*time.Second)
	conf, err := Render(cfg.Config)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Config.RecoveryRoot, 0o700); err != nil {
		return nil, fmt.Errorf("nfs-ganesha recovery directory: %w", err)
	}
	g := &Ganesha{
		cfg: cfg, confPath: filepath.Join(cfg.Dir, "ganesha.conf"), log: cfg.Logger.Named("ganesha"),
		stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
	}
	if err := atomicfile.WriteFile(g.confPath, conf, 0o600); err != nil {
		return nil, err
	}
	return g, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// SetExports replaces the exports and waits until ganesha serves them
// or ctx ends: WriteExports and its wait.
func (g *Ganesha) SetExports(ctx context.Context, exports []Export) error {
	wait, err := g.WriteExports(exports)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// WriteExports replaces the exports and has ganesha reload them with
// SIGHUP: at once, or, while a reload is under way, as soon as it ends,
// so that every write made during one reload is served by the next one
// (a boot storm's exports cost a few reloads, not one each). Writes take
// effect in the order of the calls. The returned wait returns once these
// exports, or later ones, are served, or ctx ends. If ganesha is
// restarting, the new daemon reads them at start. Mount an export's
// overlay before adding it: ganesha skips, with a logged error, an
// export whose path it cannot open, and the wait still returns nil.
func (g *Ganesha) WriteExports(exports []Export) (wait func(context.Context) error, err error) {
	data, err := RenderExports(exports)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.writeExportsLocked(data); err != nil {
		return nil, err
	}
	gen := g.gen
	if g.ready && !g.reloadingLocked(time.Now()) {
		g.reloadLocked()
	}
	return func(ctx context.Context) error {
		if err := g.waitServed(ctx, gen); err != nil {
			return fmt.Errorf("nfs-ganesha reload: %w", err)
		}
		return nil
	}, nil
}

// reloadStall is how long a reload may go without its "complete" line
// before the next write signals again (the line was lost, or ganesha
// skipped the reload).
const reloadStall = 30 * time.Second

// reloadingLocked reports whether a SIGHUP's reload has not yet ended.
func (g *Ganesha) reloadingLocked(now time.Time) bool {
	return g.hupGen > g.served && now.Sub(g.hupAt) < reloadStall
}

func (g *Ganesha) writeExports(exports []Export) error {
	data, err := RenderExports(exports)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writeExportsLocked(data)
}

// writeExportsLocked writes the exports file and counts a new version.
func (g *Ganesha) writeExportsLocked(data []byte) error {
	if err := atomicfile.WriteFile(g.cfg.Config.ExportsFile, data, 0o600); err != nil {
		return err
	}
	g.gen++
	return nil
}

// reloadLocked asks the running daemon to reread the exports.
func (g *Ganesha) reloadLocked() {
	g.hupGen, g.hupAt = g.gen, time.Now()
	g.reloads.Add(1)
	if err := g.proc.Signal(syscall.SIGHUP); err != nil {
		g.log.Warn("SIGHUP failed", "pid", g.proc.Pid, "error", err)
	}
}

// waitServed waits until the daemon serves exports version gen.
func (g *Ganesha) waitServed(ctx context.Context, gen uint64) error {
	for {
		g.mu.Lock()
		served, ch := g.served, g.changed
		g.mu.Unlock()
		if served >= gen {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-g.done:
			return ErrClosed
		}
	}
}

// notifyLocked wakes waitServed.
func (g *Ganesha) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// Close stops ganesha (SIGTERM, then SIGKILL after StopTimeout) and the
// supervisor. It is safe to call more than once.
func (g *Ganesha) Close() error {
	g.once.Do(func() { close(g.stop) })
	<-g.done
	return nil
}

// readLog folds the daemon's output into the log and tracks its events.
func (g *Ganesha) readLog(r *os.File, proc *os.Process) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		switch logGanesha(g.log, sc.Text()) {
		case eventInitialized:
			g.onInitialized(proc)
		case eventReloaded:
			g.mu.Lock()
			g.served = max(g.served, g.hupGen)
			if g.ready && g.proc == proc && g.gen > g.served { // written during that reload
				g.reloadLocked()
			}
			g.notifyLocked()
			g.mu.Unlock()
		}
	}
}

func (g *Ganesha) onInitialized(proc *os.Process) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proc != proc {
		return
	}
	g.ready = true
	g.served = max(g.served, g.started)
	if g.started != g.gen { // rewritten while it started: it may have read the old file
		g.reloadLocked()
	}
	g.notifyLocked()
}

// Reloads returns how often the daemon was asked to reload its exports.
func (g *Ganesha) Reloads() uint64 { return g.reloads.Load() }

// Restarts returns how often the daemon died and was restarted.
func (g *Ganesha) Restarts() uint64 { return g.restarts.Load() }

// Running reports whether the daemon runs and serves its exports.
func (g *Ganesha) Running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proc != nil && g.ready
}
