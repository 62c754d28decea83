// Command iscsiboot is a TEST-ONLY /init for the vm-tests iSCSI root
// test. It skips attestation: the root plan and its CHAP secrets come
// from /etc/iscsiboot/plan.json (a JSON wire.Payload), which the test adds
// to the initramfs as a second archive. It then runs the
// production pieces the agent uses: module loading, DHCP, the iSCSI root
// stage and switch_root to /sbin/init. On failure it prints
// "iscsiboot: failed: <reason>" and powers off.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/agent/kmod"
	"github.com/sealroot/sealroot/agent/netup"
	iscsiroot "github.com/sealroot/sealroot/agent/root/iscsi"
	"github.com/sealroot/sealroot/agent/sysinit"
	"github.com/sealroot/sealroot/wire"
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
	p, err := readPlan()
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

// planPath is where the test puts the payload, in a second initramfs
// archive (never on the kernel command line).
const planPath = "/etc/iscsiboot/plan.json"

func readPlan() (*wire.Payload, error) {
	raw, err := os.ReadFile(planPath)
	if err != nil {
		return nil, fmt.Errorf("iscsiboot plan: %w", err)
	}
	var p wire.Payload
	return &p, json.Unmarshal(raw, &p)
}
