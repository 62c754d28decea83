// Command loadmods is a test /init: it loads every module listed in
// sealroot.preload in order, as the agent does, prints a summary line on
// the console and powers the VM off.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/initramfs/preload"
)

func main() {
	loaded, failed := load()
	fmt.Printf("sealroot-test: loaded %d modules, %d failed\n", loaded, failed)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func load() (loaded, failed int) {
	var u unix.Utsname
	unix.Uname(&u)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	f, err := os.Open(filepath.Join(dir, preload.FileName))
	if err != nil {
		fmt.Println("sealroot-test:", err)
		return 0, 1
	}
	defer f.Close()
	entries, err := preload.Parse(f)
	if err != nil {
		fmt.Println("sealroot-test:", err)
		return 0, 1
	}
	for _, e := range entries {
		if err := loadOne(filepath.Join(dir, e.Path)); err != nil {
			fmt.Printf("sealroot-test: %s: %v\n", e.Name, err)
			failed++
			continue
		}
		loaded++
	}
	return loaded, failed
}

func loadOne(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return err
	}
	return nil
}
