package vmtest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/sealroot/sealroot/ipxe"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
	"github.com/sealroot/sealroot/server/boot/tftp"
	"github.com/sealroot/sealroot/test/testenv"
)

// Debian's iPXE builds (package ipxe), served over TFTP to PXE ROMs.
const (
	undionly = "/usr/lib/ipxe/undionly.kpxe"
	ipxeEFI  = "/usr/lib/ipxe/ipxe.efi"
)

// TestPXEBoot boots the hello initramfs over the network under SeaBIOS and
// OVMF: boot ROM -> DHCP -> TFTP undionly.kpxe or ipxe.efi -> DHCP again
// (iPXE) -> HTTP boot.ipxe -> kernel + initrd over HTTP -> /init.
func TestPXEBoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", undionly, ipxeEFI)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	artifacts := t.TempDir()
	if err := copyFile(Kernel(ctx, t), filepath.Join(artifacts, "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(HelloInitramfs(ctx, t), filepath.Join(artifacts, "hello.cpio")); err != nil {
		t.Fatal(err)
	}
	lab := NewLab(t, LabOptions{})
	serveBoot(t, lab, artifacts)

	tests := []struct {
		name string
		fw   Firmware
		want string // the iPXE binary fetched over TFTP
	}{
		{"seabios", BIOS, "undionly.kpxe"},
		{"ovmf", UEFI, "ipxe.efi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm := lab.NewVM(t, VMOptions{Name: tc.name, Firmware: tc.fw, TPM: NewTPM(t), PXE: true})
			if err := vm.Start(ctx); err != nil {
				t.Fatal(err)
			}
			mustExpect(ctx, t, vm, `iPXE`)
			mustExpect(ctx, t, vm, `boot\.ipxe`)
			mustExpect(ctx, t, vm, `Linux version`)
			mustExpect(ctx, t, vm, `sealroot: hello from init`)
			if m := mustExpect(ctx, t, vm, `tpm /dev/tpmrm0 present=(\w+)`); m[1] != "true" {
				t.Errorf("guest /dev/tpmrm0 present = %s, want true", m[1])
			}
			mustExpect(ctx, t, vm, `sealroot: powering off`)
			if err := vm.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			vm.LogTimings()
		})
	}
}

// serveBoot runs DHCP, TFTP (iPXE binaries) and HTTP (script, kernel,
// initrd) in the lab until t ends.
func serveBoot(t *testing.T, lab *Lab, artifacts string) {
	server := lab.Addr.Addr().String()
	scriptURL := "http://" + server + ":8080" + boothttp.ScriptPath + "?arch="
	lab.ServeRouterAdvertisements(t)
	lab.ServeDHCP(t, func(req *dhcpv4.DHCPv4, acked int) string {
		arch := ipxe.ArchBIOS
		if IsEFI(req) {
			arch = ipxe.ArchEFIx64
		}
		switch {
		case IsIPXE(req) && acked > 0: // chainloaded iPXE
			return scriptURL + string(arch)
		case arch == ipxe.ArchEFIx64:
			return "ipxe.efi"
		default:
			return "undionly.kpxe"
		}
	})
	logger := testenv.Logger(t, "", hclog.Info)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	tftpSrv := tftp.New(map[string]string{"undionly.kpxe": undionly, "ipxe.efi": ipxeEFI}, logger)
	tftpUp := make(chan error, 1)
	go func() {
		defer func() { done <- struct{}{} }()
		// The whole server runs in the lab: it binds a socket per transfer.
		err := lab.Do(func() error {
			conn, err := net.ListenPacket("udp4", server+":69")
			tftpUp <- err
			if err != nil {
				return err
			}
			return tftpSrv.Serve(ctx, conn)
		})
		if err != nil {
			t.Logf("tftp: %v", err)
		}
	}()
	if err := <-tftpUp; err != nil {
		t.Fatalf("tftp listen: %v", err)
	}
	scripts := func(ctx context.Context, r boothttp.ScriptRequest) ([]byte, error) {
		return ipxe.Render(ipxe.Params{
			BaseURL: "http://" + server + ":8080" + strings.TrimSuffix(boothttp.ArtifactPrefix, "/"),
			Arch:    r.Arch, Kernel: "vmlinuz", Initrd: "hello.cpio", Cmdline: "console=ttyS0 panic=-1",
		})
	}
	var ln net.Listener
	if err := lab.Do(func() (err error) { ln, err = net.Listen("tcp4", server+":8080"); return err }); err != nil {
		t.Fatalf("http listen: %v", err)
	}
	go func() {
		defer func() { done <- struct{}{} }()
		err := boothttp.Serve(ctx, ln, boothttp.NewHandler(artifacts, scripts, logger), logger)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("http: %v", err)
		}
	}()
}
