// Command hello is a tiny /init for harness tests: it mounts devtmpfs, sysfs
// and securityfs, reports the TPM device and the firmware event log size on
// the console in the agent's "sealroot:" line format, and powers off.
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	fmt.Println("sealroot: hello from init")
	start := time.Now()
	mountAll()
	fmt.Printf("sealroot: [ok] mount (%s)\n", time.Since(start))

	start = time.Now()
	fmt.Printf("sealroot: tpm /dev/tpmrm0 present=%t\n", exists("/dev/tpmrm0"))
	n := eventLogSize("/sys/kernel/security/tpm0/binary_bios_measurements")
	fmt.Printf("sealroot: eventlog bytes=%d\n", n)
	fmt.Printf("sealroot: [ok] tpm (%s)\n", time.Since(start))

	fmt.Println("sealroot: powering off")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("sealroot: reboot: %v\n", err)
	}
	select {}
}

func mountAll() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"sysfs", "/sys", "sysfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			fmt.Printf("sealroot: mkdir %s: %v\n", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil {
			fmt.Printf("sealroot: mount %s: %v\n", m.dst, err)
		}
	}
}

func exists(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// eventLogSize reads the whole log: securityfs reports size 0 in stat.
func eventLogSize(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Printf("sealroot: eventlog: %v\n", err)
		return -1
	}
	return len(b)
}
