package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Firmware selects the VM's firmware and machine type.
type Firmware int

const (
	// BIOS is SeaBIOS on QEMU's pc machine, TPM on tpm-tis.
	BIOS Firmware = iota
	// UEFI is OVMF (Secure Boot off) on q35, TPM on tpm-crb.
	UEFI
)

func (f Firmware) String() string {
	if f == UEFI {
		return "uefi"
	}
	return "bios"
}

// Host files the VMs use (Debian packages qemu-system-x86, ovmf).
const (
	QEMU     = "qemu-system-x86_64"
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// Secure Boot on, PK/KEK/db = the snakeoil key pair below.
	OVMFCodeSnakeoil = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"
	// Secure Boot on with OVMFVarsMS: the Microsoft keys.
	OVMFCodeSecboot  = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsSnakeoil = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	SnakeoilKey      = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	SnakeoilCert     = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
)

// VMOptions configures a [VM]. The zero value boots SeaBIOS with nothing to
// boot; set Kernel (direct boot) or PXE.
type VMOptions struct {
	// Name prefixes console lines in the test log. Default "vm".
	Name string
	// Firmware is BIOS (default) or UEFI.
	Firmware Firmware
	// SecureBoot, with UEFI, runs Debian's Secure Boot OVMF whose PK, KEK
	// and db hold the snakeoil test key (OVMFCodeSnakeoil,
	// OVMFVarsSnakeoil): only images signed with SnakeoilKey boot.
	SecureBoot bool
	// MicrosoftKeys, with SecureBoot, runs Debian's Secure Boot OVMF with
	// the Microsoft keys enrolled instead (OVMFCodeSecboot, OVMFVarsMS):
	// images signed by the Microsoft UEFI CA boot, such as Debian's shim.
	MicrosoftKeys bool
	// TPM, if set, is attached via a swtpm started for each boot.
	TPM *TPM
	// MemoryMB is the guest RAM. Default 512.
	MemoryMB int
	// MAC is the NIC's address. Default 52:54:00:77:00:<n>, n = tap index.
	MAC net.HardwareAddr
	// Kernel, Initrd and Append boot a kernel directly (-kernel/-initrd/
	// -append). Append defaults to "console=ttyS0 panic=-1".
	Kernel, Initrd, Append string
	// PXE boots from the NIC with QEMU's iPXE option ROM; otherwise the NIC
	// has no option ROM (faster, and no PCR 2 measurement).
	PXE bool
	// NativePXE boots from the NIC without an option ROM: the firmware's
	// own network stack does the PXE boot (OVMF's VirtioNetDxe and
	// PxeBcDxe, as on real UEFI machines without iPXE). UEFI only; SeaBIOS
	// has no PXE client of its own.
	NativePXE bool
	// NoHardwareRNG leaves out virtio-rng and uses a CPU without RDRAND,
	// so the guest kernel's CRNG is not ready when /init starts (the
	// entropy trap the agent must get out of with the TPM).
	NoHardwareRNG bool
	// Input connects the serial console's input to Type (QEMU's stdin);
	// otherwise the console reads nothing.
	Input bool
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
}

// VM is a QEMU virtual machine on a [Lab] bridge. Its lifecycle is
// NewVM → Start → (Expect …) → Wait or Kill; it is killed and its files
// removed in t.Cleanup. A VM boots once.
type VM struct {
	t    testing.TB
	lab  *Lab
	opts VMOptions
	tap  string
	dir  string // t.TempDir: console log, OVMF vars, swtpm log
	sock string // swtpm control socket (short path)
	con  *console

	mu    sync.Mutex // guards the processes and input
	qemu  *proc
	swtpm *proc
	input *os.File // the serial console's input, with VMOptions.Input
}

// NewVM prepares a VM with a new tap device on the lab bridge.
func (l *Lab) NewVM(t testing.TB, opts VMOptions) *VM {
	t.Helper()
	RequireTools(t, QEMU)
	if opts.Firmware == UEFI {
		RequireTools(t, OVMFCode, OVMFVars)
	}
	vm := &VM{t: t, lab: l, dir: t.TempDir()}
	tap, err := l.newTap()
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	vm.tap = tap
	vm.opts = vm.withDefaults(opts)
	sockDir, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		t.Fatal(err)
	}
	vm.sock = filepath.Join(sockDir, "swtpm.sock")
	t.Cleanup(func() {
		vm.Kill()
		os.RemoveAll(sockDir)
	})
	if opts.Firmware == UEFI {
		vars := OVMFVars
		switch {
		case opts.SecureBoot && opts.MicrosoftKeys:
			RequireTools(t, OVMFCodeSecboot, OVMFVarsMS)
			vars = OVMFVarsMS
		case opts.SecureBoot:
			RequireTools(t, OVMFCodeSnakeoil, OVMFVarsSnakeoil)
			vars = OVMFVarsSnakeoil
		}
		if err := copyFile(vars, vm.varsPath()); err != nil {
			t.Fatalf("vmtest: copy OVMF vars: %v", err)
		}
	}
	return vm
}

func (vm *VM) withDefaults(o VMOptions) VMOptions {
	if o.Name == "" {
		o.Name = "vm"
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 512
	}
	if o.MAC == nil {
		var n int
		fmt.Sscanf(vm.tap, "tap%d", &n)
		o.MAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, byte(n)}
	}
	if o.Kernel != "" && o.Append == "" {
		o.Append = "console=ttyS0 panic=-1"
	}
	return o
}

func (vm *VM) varsPath() string { return filepath.Join(vm.dir, "OVMF_VARS.fd") }

// ConsoleLog is the path of the file receiving the console lines, each
// prefixed with seconds since Start.
func (vm *VM) ConsoleLog() string { return filepath.Join(vm.dir, "console.log") }

// MAC returns the VM NIC's address.
func (vm *VM) MAC() net.HardwareAddr { return vm.opts.MAC }

// Start starts swtpm (if a TPM is set) and QEMU. Both are killed when ctx
// is done.
func (vm *VM) Start(ctx context.Context) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.qemu != nil {
		return errors.New("vmtest: VM already started")
	}
	if vm.opts.TPM != nil {
		p, err := vm.opts.TPM.start(ctx, vm.sock, filepath.Join(vm.dir, "swtpm.log"))
		if err != nil {
			return err
		}
		vm.swtpm = p
	}
	logFile, err := os.Create(vm.ConsoleLog())
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return err
	}
	cmd := vm.lab.Exec(ctx, QEMU, vm.Args()...)
	cmd.Stdout, cmd.Stderr = pw, pw
	var inR *os.File
	if vm.opts.Input {
		if inR, vm.input, err = os.Pipe(); err != nil {
			pr.Close()
			pw.Close()
			logFile.Close()
			return err
		}
		cmd.Stdin = inR
	}
	name := vm.opts.Name
	vm.con = newConsole(func(f string, a ...any) { vm.t.Logf(name+": "+f, a...) }, logFile)
	vm.con.start = time.Now()
	vm.t.Logf("%s: %s %s", name, QEMU, strings.Join(vm.Args(), " "))
	p, err := startProc(cmd)
	pw.Close()
	if inR != nil {
		inR.Close()
	}
	if err != nil {
		pr.Close()
		logFile.Close()
		return err
	}
	vm.qemu = p
	go func() {
		vm.con.run(pr)
		pr.Close()
		logFile.Close()
	}()
	go func() {
		<-p.done
		vm.con.markExit()
	}()
	return nil
}

// Wait waits until QEMU exits and the console is drained, and returns
// QEMU's exit error, or ctx's error (the VM keeps running then).
func (vm *VM) Wait(ctx context.Context) error {
	q, con := vm.procs()
	if q == nil {
		return errors.New("vmtest: VM not started")
	}
	select {
	case <-q.done:
	case <-ctx.Done():
		return fmt.Errorf("vmtest: wait for %s: %w", vm.opts.Name, ctx.Err())
	}
	<-con.done
	if q.err != nil {
		return fmt.Errorf("vmtest: %s: %w", QEMU, q.err)
	}
	return nil
}

// Type sends text to the serial console's input (VMOptions.Input), as
// typed on the machine's keyboard.
func (vm *VM) Type(text string) error {
	vm.mu.Lock()
	in := vm.input
	vm.mu.Unlock()
	if in == nil {
		return errors.New("vmtest: VM has no console input (VMOptions.Input)")
	}
	for _, b := range []byte(text) { // one byte at a time, as a UART takes them
		if _, err := in.Write([]byte{b}); err != nil {
			return fmt.Errorf("vmtest: type on %s: %w", vm.opts.Name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Kill kills QEMU and swtpm and waits for them and for the console reader.
// It is safe to call more than once, also before Start.
func (vm *VM) Kill() {
	vm.mu.Lock()
	q, s, con := vm.qemu, vm.swtpm, vm.con
	if vm.input != nil {
		vm.input.Close()
		vm.input = nil
	}
	vm.mu.Unlock()
	if q != nil {
		q.kill()
		<-con.done
	}
	if s != nil {
		s.kill()
	}
}

func (vm *VM) procs() (*proc, *console) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.qemu, vm.con
}

// Expect waits for the next console line (after the previous match)
// matching re and returns its submatches. It fails with ErrExited if QEMU
// exits first, or with ctx's error.
func (vm *VM) Expect(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	_, con := vm.procs()
	if con == nil {
		return nil, errors.New("vmtest: VM not started")
	}
	return con.expect(ctx, re)
}

// Timings returns, for each boot stage marker seen (MarkFirmware,
// MarkIPXE, MarkKernel, MarkExit), the time from Start to its first console
// line, and for each agent stage (StagePrefix+name) the duration the agent
// reported.
func (vm *VM) Timings() map[string]time.Duration {
	_, con := vm.procs()
	if con == nil {
		return nil
	}
	return con.timings()
}

// LogTimings writes Timings to the test log, markers in boot order.
func (vm *VM) LogTimings() {
	tm := vm.Timings()
	var b strings.Builder
	for _, k := range []string{MarkFirmware, MarkIPXE, MarkKernel, MarkExit} {
		if d, ok := tm[k]; ok {
			fmt.Fprintf(&b, " %s=%.2fs", k, d.Seconds())
		}
	}
	var stages []string
	for k := range tm {
		if strings.HasPrefix(k, StagePrefix) {
			stages = append(stages, k)
		}
	}
	sort.Strings(stages)
	for _, k := range stages {
		fmt.Fprintf(&b, " %s=%s", k, tm[k])
	}
	vm.t.Logf("%s: timings (%s):%s", vm.opts.Name, vm.opts.Firmware, b.String())
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
