// Command iscsiboot is a TEST-ONLY /init for the vm-tests iSCSI root
// test. It skips attestation: the root plan and its CHAP secrets come
// from the kernel command line (iscsiboot.plan=<base64 of a JSON
// wire.Payload>), which only a test can set. It then runs the
// production pieces the agent uses: module loading, DHCP, the iSCSI root
// stage and switch_root to /sbin/init. On failure it prints
// "iscsiboot: failed: <reason>" and powers off.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/agent/kmod"
	"github.com/sealroot/sealroot/agent/netup"
	iscsiroot "github.com/sealroot/sealroot/agent/root/iscsi"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/server/attest/wire"
)

func main() {
	if err := sysinit.MountAll("/"); err != nil {
		fmt.Printf("iscsiboot: mounts: %v\n", err)
	}
	sysinit.Console()
	log := hclog.New(&hclog.LoggerOptions{Name: "iscsiboot", Output: os.Stdout, Level: hclog.Info})
	err := run(context.Background(), log)
	fmt.Printf("iscsiboot: failed: %v\n", err)
	sysinit.PowerOff()
	select {}
}

func run(ctx context.Context, log hclog.Logger) error {
	start := time.Now()
	p, err := planFromCmdline()
	if err != nil {
		return err
	}
	if _, err := kmod.Load(kmod.Options{Logger: log}, []string{"iscsi_tcp", "sd_mod", "crc32c_generic", "ext4"}); err != nil {
		return err
	}
	if _, err := netup.Up(ctx, netup.Config{Logger: log}); err != nil {
		return err
	}
	t0 := time.Now()
	dir, err := (&iscsiroot.Stage{Logger: log}).Mount(ctx, p)
	if err != nil {
		return err
	}
	fmt.Printf("iscsiboot: root mounted in %s (%s since init)\n", time.Since(t0).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return sysinit.SwitchRoot(dir, "/sbin/init")
}

func planFromCmdline() (*wire.Payload, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "iscsiboot.plan="); ok {
			raw, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("iscsiboot.plan: %w", err)
			}
			var p wire.Payload
			return &p, json.Unmarshal(raw, &p)
		}
	}
	return nil, errors.New("no iscsiboot.plan= on the kernel command line")
}
