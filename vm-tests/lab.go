package vmtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
)

// LabOptions configures a [Lab]. The zero value works.
type LabOptions struct {
	// Name is the network namespace name, suffixed with the process ID so
	// that concurrent test runs do not share it, and from the second lab
	// of the same name in the process on, with a sequence number, so
	// that parallel tests do not either. Default "sealroot-lab".
	Name string
	// Bridge is the bridge the VMs' taps join. Default "br0".
	Bridge string
	// Addr is the bridge's address inside the namespace, where servers
	// under test listen. Default 10.77.0.1/24.
	Addr netip.Prefix
}

func (o *LabOptions) setDefaults() {
	if o.Name == "" {
		o.Name = "sealroot-lab"
	}
	o.Name = labNames.unique(fmt.Sprintf("%s-%d", o.Name, os.Getpid()))
	if o.Bridge == "" {
		o.Bridge = "br0"
	}
	if !o.Addr.IsValid() {
		o.Addr = netip.MustParsePrefix("10.77.0.1/24")
	}
}

// labNames hands out the process's lab namespace names: parallel tests
// each get their own namespace, bridge, taps and server addresses.
var labNames = nameCounter{seen: map[string]int{}}

// nameCounter makes names unique within the process.
type nameCounter struct {
	mu   sync.Mutex
	seen map[string]int // times each name was asked for
}

// unique returns name the first time, then name-2, name-3, ...
func (c *nameCounter) unique(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[name]++
	if n := c.seen[name]; n > 1 {
		return fmt.Sprintf("%s-%d", name, n)
	}
	return name
}

// Lab is a network namespace with a bridge that VMs attach to. Addresses
// exist only inside the namespace, so nothing leaves it.
type Lab struct {
	// NS is the lab's namespace.
	NS *netnstest.NS
	// Bridge is the name of the bridge in NS.
	Bridge string
	// Addr is the bridge's address.
	Addr netip.Prefix

	mu   sync.Mutex
	taps int // taps created so far, names tap0, tap1, ...
}

// NewLab creates the lab namespace and its bridge; both are removed in
// t.Cleanup after every VM of the lab is gone.
func NewLab(t testing.TB, opts LabOptions) *Lab {
	t.Helper()
	opts.setDefaults()
	ns := netnstest.New(t, opts.Name)
	if err := ns.AddBridge(opts.Bridge, opts.Addr); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	return &Lab{NS: ns, Bridge: opts.Bridge, Addr: opts.Addr}
}

// Do runs fn on a thread inside the lab namespace (see netnstest.NS.Do).
// Sockets fn opens stay in the namespace after it returns.
func (l *Lab) Do(fn func() error) error {
	return l.NS.Do(fn)
}

// Exec returns a command that runs name inside the lab namespace (via
// `nsenter --net`, which keeps the host's mount namespace). The process
// gets its own process group, which is killed when ctx is done, and
// SIGKILL if the test binary dies.
func (l *Lab) Exec(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := l.NS.Command(ctx, name, args...)
	ownProcessGroup(cmd)
	return cmd
}

// Start starts name inside the lab namespace (see Exec) with its output
// going to t.Log, prefixed with the program's base name, and kills its
// process group in t.Cleanup. Use it for servers under test, e.g.
// `sealroot serve`.
func (l *Lab) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := l.Exec(context.Background(), name, args...)
	w := testenv.Writer(t, filepath.Base(name)+": ")
	cmd.Stdout, cmd.Stderr = w, w
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	t.Cleanup(p.kill)
	return cmd
}

// newTap creates the next tap device on the lab bridge.
func (l *Lab) newTap() (string, error) {
	l.mu.Lock()
	name := fmt.Sprintf("tap%d", l.taps)
	l.taps++
	l.mu.Unlock()
	if err := l.NS.AddTap(name, l.Bridge); err != nil {
		return "", err
	}
	return name, nil
}

// ownProcessGroup makes cmd the leader of a new process group that is
// killed as a whole on cancellation, and killed by the kernel if the test
// binary dies. The command must be started from a goroutine that is not
// locked to a thread (Pdeathsig fires when the forking thread exits).
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
}

// killGroup sends SIGKILL to cmd's process group, if it was started.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
