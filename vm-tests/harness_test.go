package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/u-root/mkuimage/cpio"

	"github.com/sealroot/sealroot/test/netnstest"
)

func TestArgs(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x77, 0, 1}
	tests := []struct {
		name    string
		opts    VMOptions
		want    []string
		wantNot []string
	}{
		{"bios_direct_tpm", VMOptions{TPM: &TPM{}, Kernel: "vmlinuz", Initrd: "i.cpio", Append: "console=ttyS0"},
			[]string{"tcg", "pc", "tpm-tis,tpmdev=tpm0", "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:01,romfile=", "-kernel", "-initrd", "virtio-rng-pci", "-no-reboot"},
			[]string{"kvm", "q35", "tpm-crb,tpmdev=tpm0"}},
		{"uefi_pxe_tpm", VMOptions{Firmware: UEFI, TPM: &TPM{}, PXE: true},
			[]string{"q35", "tpm-crb,tpmdev=tpm0", "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:01,bootindex=1",
				"if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode, "if=pflash,format=raw,unit=1,file=/d/OVMF_VARS.fd"},
			[]string{"-kernel", "tpm-tis,tpmdev=tpm0"}},
		{"no_tpm", VMOptions{},
			[]string{"tap,id=n0,ifname=tap1,script=no,downscript=no"},
			[]string{"-tpmdev", "-chardev"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm := &VM{tap: "tap1", dir: "/d", sock: "/s/swtpm.sock"}
			tc.opts.MAC = mac
			vm.opts = vm.withDefaults(tc.opts)
			args := vm.Args()
			for _, w := range tc.want {
				if !slices.Contains(args, w) {
					t.Errorf("Args() = %q, missing %q", args, w)
				}
			}
			for _, w := range tc.wantNot {
				if slices.Contains(args, w) {
					t.Errorf("Args() = %q, has %q", args, w)
				}
			}
		})
	}
}

func TestDefaultMAC(t *testing.T) {
	vm := &VM{tap: "tap7"}
	if got := vm.withDefaults(VMOptions{}).MAC.String(); got != "52:54:00:77:00:07" {
		t.Errorf("default MAC for tap7 = %s, want 52:54:00:77:00:07", got)
	}
}

func TestWriteInitramfs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "i.cpio")
	extra := cpio.StaticFile("etc/x", "x", 0o444)
	if err := WriteInitramfs(path, []byte("\x7fELF"), extra); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name         string
		mode         uint64
		major, minor uint64
	}{
		{".", cpio.S_IFDIR | 0o755, 0, 0},
		{"dev", cpio.S_IFDIR | 0o755, 0, 0},
		{"dev/console", cpio.S_IFCHR | 0o600, 5, 1},
		{"init", cpio.S_IFREG | 0o755, 0, 0},
		{"etc/x", cpio.S_IFREG | 0o444, 0, 0},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r.Name != w.name || r.Mode != w.mode || r.Rmajor != w.major || r.Rminor != w.minor || r.MTime != 0 {
			t.Errorf("record %d = %s %o %d,%d mtime %d, want %s %o %d,%d mtime 0",
				i, r.Name, r.Mode, r.Rmajor, r.Rminor, r.MTime, w.name, w.mode, w.major, w.minor)
		}
	}
	init, err := io.ReadAll(io.NewSectionReader(recs[3], 0, int64(recs[3].FileSize)))
	if err != nil || !bytes.Equal(init, []byte("\x7fELF")) {
		t.Errorf("init content = %q, %v; want \\x7fELF", init, err)
	}
}

// TestKillGroup checks that a killed process takes its whole group along
// (QEMU and swtpm must not outlive a test, whatever they spawned).
func TestKillGroup(t *testing.T) {
	cmd := exec.CommandContext(context.Background(), "sh", "-c", "sleep 60 & sleep 60")
	ownProcessGroup(cmd)
	p, err := startProc(cmd)
	if err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	time.Sleep(100 * time.Millisecond) // let sh fork the background sleep
	p.kill()
	p.kill() // safe twice
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still alive after kill", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLab(t *testing.T) {
	netnstest.RequireRoot(t)
	RequireTools(t, "nsenter", "ip")
	const name = "vmtest-lab-test"
	// A stale namespace of the same name, as a crashed run of the same
	// process ID leaves it (NewLab suffixes the process ID).
	if out, err := exec.Command("ip", "netns", "add", fmt.Sprintf("%s-%d", name, os.Getpid())).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	lab := NewLab(t, LabOptions{Name: name})
	out, err := lab.Exec(context.Background(), "ip", "-br", "addr", "show", "br0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.77.0.1/24") {
		t.Fatalf("ip addr in lab = %q, %v; want br0 with 10.77.0.1/24", out, err)
	}
	var hostHas bool
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		hostHas = hostHas || strings.HasPrefix(a.String(), "10.77.0.1/")
	}
	if hostHas {
		t.Error("10.77.0.1 is configured outside the lab namespace")
	}
	tap, err := lab.newTap()
	if err != nil {
		t.Fatal(err)
	}
	out, err = lab.Exec(context.Background(), "ip", "-d", "link", "show", tap).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "master br0") || !strings.Contains(string(out), "tun type tap") {
		t.Fatalf("ip link show %s = %q, %v; want a tap enslaved to br0", tap, out, err)
	}
	var pgid int
	t.Run("start_killed_at_cleanup", func(t *testing.T) {
		cmd := lab.Start(t, "sh", "-c", "echo started; exec sleep 60")
		pgid = cmd.Process.Pid
	})
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group of Start after its test ended: kill(0) = %v, want ESRCH", err)
	}
	err = lab.Do(func() error {
		_, err := net.InterfaceByName("definitely-missing0")
		return err
	})
	if err == nil {
		t.Error("Do did not return fn's error")
	}
}
