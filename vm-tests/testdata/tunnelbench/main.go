// Command tunnelbench is the /init of TestTunnelKernelInGuest: it mounts
// the pseudo file systems, loads WireGuard, TUN, veth and bridge from the
// initramfs, then runs the server/tunnel test binary at /tunnel.test twice
// (kernel-engine link tests with CI=true, so a missing kernel WireGuard
// fails; then BenchmarkThroughput, every server end), prints each exit
// status as "tunnelbench: <step> exit=<n>" and powers off.
package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/agent/kmod"
)

func main() {
	mountAll()
	res, err := kmod.Load(kmod.Options{Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stdout, Level: hclog.Info})},
		[]string{"wireguard", "tun", "veth", "bridge"})
	if err != nil {
		fmt.Printf("tunnelbench: modules: %v\n", err)
	} else {
		fmt.Printf("tunnelbench: modules loaded %d\n", len(res.Loaded))
	}
	run("test", "-test.run", "^TestTunnel$/^kernel$", "-test.v", "-test.count", "1")
	run("bench", "-test.run", "^$", "-test.bench", "^BenchmarkThroughput$", "-test.benchtime", "1x")
	fmt.Println("tunnelbench: powering off")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("tunnelbench: reboot: %v\n", err)
	}
	select {}
}

func run(step string, args ...string) {
	cmd := exec.Command("/tunnel.test", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.Env = []string{"CI=true", "TMPDIR=/tmp", "HOME=/tmp", "PATH=/bin"}
	cmd.Dir = "/tmp"
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			fmt.Printf("tunnelbench: %s: %v\n", step, err)
		}
	}
	fmt.Printf("tunnelbench: %s exit=%d\n", step, code)
}

func mountAll() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			fmt.Printf("tunnelbench: mkdir %s: %v\n", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil {
			fmt.Printf("tunnelbench: mount %s: %v\n", m.dst, err)
		}
	}
}
