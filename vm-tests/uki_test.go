package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/u-root/mkuimage/cpio"

	"github.com/sealroot/sealroot/ipxe"
	"github.com/sealroot/sealroot/server/audit"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
	"github.com/sealroot/sealroot/server/boot/tftp"
	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/uki"
)

// reRefused is the agent's console line for a refused attestation.
var reRefused = `sealroot: attestation refused, check "([\w-]+)" failed: (.*)`

// TestMeasuredUKIBoot runs issue 6 end to end: UEFI machines PXE-boot
// Debian's iPXE, which boots sealroot's unified kernel image with the
// script's command line; the server checks PCRs 4, 11 and 12 against its
// prediction from the artifacts it serves and keeps only the firmware PCRs
// pinned.
//
// Every boot of the UEFI machine uses the same TPM and the same MAC: the
// MAC is in the PXE boot option OVMF measures into PCR 1 (a fresh variable
// store each boot), so another MAC is a firmware change.
func TestMeasuredUKIBoot(t *testing.T) {
	SkipUnlessEnabled(t)
	t.Parallel()
	RequireTools(t, QEMU, "swtpm", "nsenter", uki.DefaultStub, OVMFCode, OVMFVars, OVMFVarsMS)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	tpmUEFI, tpmBIOS, tpmChain := NewTPM(t), NewTPM(t), NewTPM(t)
	lab := NewLab(t, LabOptions{Name: "uki-lab"})
	sr := startSealroot(ctx, t, lab, SealrootOptions{TPMs: []*TPM{tpmUEFI, tpmBIOS, tpmChain}, UKI: true})
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x0b, 0x01}
	uefiVM := func(t *testing.T, l *Lab, name string) *VM {
		return l.NewVM(t, VMOptions{Name: name, Firmware: UEFI, TPM: tpmUEFI, PXE: true, MAC: mac})
	}
	var id string // the approved UEFI machine

	t.Run("good_uki", func(t *testing.T) {
		vm := uefiVM(t, lab, "uki-good")
		start(ctx, t, vm)
		// iPXE passes the image name first; the kernel logs what it got.
		expectBoot(ctx, t, vm, `Command line: `+UKIName+` `+defaultCmdline)
		id = expectBoot(ctx, t, vm, rePending.String())[1]
		recordFixture(ctx, t, sr, id, "ovmf-ipxe-rom-uki")
		if _, err := sr.CLI(ctx, "machine", "approve", id, "--name", "uki-1", "--policy", "predicted"); err != nil {
			t.Fatal(err)
		}
		expectAttested(ctx, t, vm, "uki-1", id)
		e := lastAudit(t, sr, id)
		if e.Outcome != "allowed" || !strings.Contains(e.Reason, "boot matches the prediction for "+UKIName) {
			t.Errorf("audit: %s %q, want allowed by the prediction", e.Outcome, e.Reason)
		}
		t.Logf("audit: %s: %s", e.Outcome, e.Reason)
	})
	if id == "" {
		t.Fatal("no approved UEFI machine: the other scenarios need it")
	}

	t.Run("tampered_initramfs", func(t *testing.T) {
		// The threat: the boot network is not authenticated, so whoever
		// answers the machine's DHCP, TFTP and HTTP can make it boot a
		// UKI the server never served. The server keeps predicting from
		// its own uki.efi; the machine boots from an attacker lab (its
		// own DHCP, TFTP, HTTP serving the tampered UKI) whose only way
		// to the server is a UDP relay of the attestation port.
		initrd, err := SealrootInitramfs()
		if err != nil {
			t.Fatal(err)
		}
		// One more small archive after the image, whatever its
		// compression: the agent runs unchanged, only the measurement
		// can tell.
		if initrd, err = appendImageVersion(initrd, "tampered"); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := BuildUKI(shared.vmlinuz, initrd, defaultCmdline, filepath.Join(dir, UKIName)); err != nil {
			t.Fatal(err)
		}
		mitm := NewLab(t, LabOptions{Name: "uki-mitm"})
		serveUKIBoot(t, mitm, dir, defaultCmdline)
		relayUDP(t, mitm, lab, SealrootIP+":"+SealrootAttestPort)

		vm := uefiVM(t, mitm, "uki-tampered")
		start(ctx, t, vm)
		m := expectBoot(ctx, t, vm, reRefused)
		vm.Kill()
		vm.LogTimings()
		if m[1] != "policy" || !strings.Contains(m[2], "PCR 11: .initrd section digest differs") {
			t.Errorf("console: check %q reason %q, want policy naming PCR 11 .initrd", m[1], m[2])
		}
		e := lastAudit(t, sr, id)
		if e.Outcome != "refused" || e.Check != "policy" || !strings.Contains(e.Reason, "PCR 11: .initrd section digest differs") {
			t.Errorf("audit: %s %s %q, want refused by policy naming PCR 11 .initrd", e.Outcome, e.Check, e.Reason)
		}
		t.Logf("audit: %s (%s): %s", e.Outcome, e.Check, e.Reason)
		if mach, err := sr.Machine(ctx, id); err != nil || mach.State != store.StateApproved {
			t.Errorf("after a refused boot: %v, state %v; want still approved", err, mach)
		}
	})

	t.Run("image_update", func(t *testing.T) {
		before := prediction(t, sr)
		initrd, err := SealrootInitramfs()
		if err != nil {
			t.Fatal(err)
		}
		// Image 2: the same agent plus a file, appended as a second
		// (uncompressed) archive, and another built-in command line.
		initrd, err = appendImageVersion(initrd, "2")
		if err != nil {
			t.Fatal(err)
		}
		if err := BuildUKI(shared.vmlinuz, initrd, defaultCmdline+" sealroot.image=2", filepath.Join(sr.ArtifactsDir(), UKIName)); err != nil {
			t.Fatal(err)
		}
		after := prediction(t, sr)
		if string(after.PCR11) == string(before.PCR11) {
			t.Fatal("the new image predicts the same PCR 11")
		}
		vm := uefiVM(t, lab, "uki-update")
		start(ctx, t, vm)
		expectAttested(ctx, t, vm, "uki-1", id)
		mach, err := sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if mach.State != store.StateApproved || mach.BootCount != 2 {
			t.Errorf("after the update: state %s boot_count %d, want approved 2 (no re-approval)", mach.State, mach.BootCount)
		}
	})

	t.Run("firmware_change", func(t *testing.T) {
		// A changed firmware configuration: Secure Boot keys enrolled (the
		// distribution's PK and KEK, Microsoft's KEK and db) with Secure
		// Boot toggled off in setup (SecureBootEnable 0), so the unsigned
		// iPXE ROM and UKI still load. OVMF measures the key variables into
		// PCR 7, a pinned firmware PCR: the boot needs re-approval, and
		// after it this firmware's boots get their credential. (Debian's
		// OVMF 2022.11 measures no change for another SMBIOS BIOS version
		// or a second NIC without option ROM; Secure Boot on refuses the
		// unsigned UKI.)
		changedVM := func(name string) *VM {
			vm := uefiVM(t, lab, name)
			if err := copyFile(OVMFVarsMS, vm.varsPath()); err != nil {
				t.Fatal(err)
			}
			if err := SetOVMFVar(vm.varsPath(), GUIDSecureBootEnableDisable, "SecureBootEnable", []byte{0}); err != nil {
				t.Fatal(err)
			}
			return vm
		}
		vm := changedVM("uki-fw")
		start(ctx, t, vm)
		expectBoot(ctx, t, vm, `sealroot: needs re-approval: machine `+id)
		mach, err := sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if mach.State != store.StateNeedsReapproval {
			t.Fatalf("after a firmware change: state %s diff:\n%s\nwant needs-reapproval", mach.State, mach.Diff)
		}
		t.Logf("firmware diff:\n%s", mach.Diff)
		if got := changedPCRsOf(mach.Diff); !slices.Equal(got, []int{7}) {
			t.Errorf("diff names PCRs %v, want only firmware PCR 7:\n%s", got, mach.Diff)
		}
		for _, key := range []string{"(PK)", "(KEK)", "(db)"} {
			if !strings.Contains(mach.Diff, key) {
				t.Errorf("diff does not name the %s variable:\n%s", key, mach.Diff)
			}
		}
		if e := lastAudit(t, sr, id); !strings.Contains(e.Reason, "firmware boot state changed in PCR 7") {
			t.Errorf("audit: %s %q, want firmware change in PCR 7", e.Outcome, e.Reason)
		}
		show, err := sr.CLI(ctx, "machine", "show", id)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sealroot machine show:\n%s", show)
		if !strings.Contains(show, "Changes since approval:") || !strings.Contains(show, "(PK)") {
			t.Errorf("machine show has no readable diff:\n%s", show)
		}
		if _, err := sr.CLI(ctx, "machine", "approve", id); err != nil {
			t.Fatal(err)
		}
		// The waiting agent retries and gets its credential; so does the
		// next boot with this firmware, without another approval.
		expectAttested(ctx, t, vm, "uki-1", id)
		next := changedVM("uki-fw-next")
		start(ctx, t, next)
		expectAttested(ctx, t, next, "uki-1", id)
		mach, err = sr.Machine(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if mach.State != store.StateApproved || mach.Policy != store.PolicyPredicted {
			t.Errorf("after re-approval: state %s policy %s, want approved, predicted kept", mach.State, mach.Policy)
		}
		if e := lastAudit(t, sr, id); e.Outcome != "allowed" {
			t.Errorf("audit of the next boot: %s %q, want allowed", e.Outcome, e.Reason)
		}
	})

	t.Run("ipxe_efi_chain", func(t *testing.T) { testIPXEChain(ctx, t, lab, sr, tpmChain) })

	t.Run("bios_refused", func(t *testing.T) {
		vm := lab.NewVM(t, VMOptions{Name: "uki-bios", Firmware: BIOS, TPM: tpmBIOS, PXE: true})
		start(ctx, t, vm)
		bios := expectBoot(ctx, t, vm, rePending.String())[1]
		if _, err := sr.CLI(ctx, "machine", "approve", bios, "--policy", "predicted"); err != nil {
			t.Fatal(err)
		}
		m := expectBoot(ctx, t, vm, reRefused)
		if m[1] != policy.CheckBootMeasurement || !strings.Contains(m[2], "does not measure the initramfs") {
			t.Errorf("console: check %q reason %q, want %s refusing legacy BIOS", m[1], m[2], policy.CheckBootMeasurement)
		}
		// Only identity-only admits it: forget, let it enroll again,
		// approve it so.
		if _, err := sr.CLI(ctx, "machine", "forget", "--yes", bios); err != nil {
			t.Fatal(err)
		}
		expectBoot(ctx, t, vm, rePending.String())
		if _, err := sr.CLI(ctx, "machine", "approve", bios, "--name", "bios-1", "--policy", "identity-only"); err != nil {
			t.Fatal(err)
		}
		expectAttested(ctx, t, vm, "bios-1", bios)
		show, err := sr.CLI(ctx, "machine", "show", bios)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sealroot machine show:\n%s", show)
		if !strings.Contains(show, "Boot state:     NOT checked: legacy BIOS") {
			t.Errorf("machine show does not say plainly that the boot state is not checked:\n%s", show)
		}
	})
}

// testIPXEChain boots a new UEFI machine the way most hardware does: the
// firmware's PXE fetches ipxe.efi (measured into PCR 4), which fetches the
// script and the UKI the server serves. Sealroot's DHCP hands QEMU's iPXE
// ROM the script directly, so the chain runs in a lab whose DHCP always
// offers ipxe.efi first, and reaches the server through a relay.
func testIPXEChain(ctx context.Context, t *testing.T, lab *Lab, sr *Sealroot, tp *TPM) {
	chain := NewLab(t, LabOptions{Name: "uki-chain"})
	serveUKIBoot(t, chain, sr.ArtifactsDir(), defaultCmdline)
	relayUDP(t, chain, lab, SealrootIP+":"+SealrootAttestPort)
	vm := chain.NewVM(t, VMOptions{Name: "uki-chain", Firmware: UEFI, TPM: tp, PXE: true})
	start(ctx, t, vm)
	id := expectBoot(ctx, t, vm, rePending.String())[1]
	mach, err := sr.Machine(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ipxeApp := prediction(t, sr).BootApps[0]
	var apps int // iPXE's LoadImage probe logs a second, identical event
	for _, e := range mach.Reported.Events {
		if e.PCR == predict.PCRBootApps && string(e.Digest) == string(ipxeApp.Digest) {
			apps++
		}
	}
	if apps == 0 {
		t.Errorf("PCR 4 does not hold ipxe.efi (sha256:%x)", ipxeApp.Digest)
	}
	recordFixture(ctx, t, sr, id, "ovmf-pxe-ipxe-uki")
	if _, err := sr.CLI(ctx, "machine", "approve", id, "--name", "chain-1", "--policy", "predicted"); err != nil {
		t.Fatal(err)
	}
	expectAttested(ctx, t, vm, "chain-1", id)
}

func start(ctx context.Context, t *testing.T, vm *VM) {
	t.Helper()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// changedPCRsOf returns the PCRs a policy diff lists as changed, in order.
func changedPCRsOf(diff string) []int {
	var pcrs []int
	for _, line := range strings.Split(diff, "\n") {
		var pcr int
		if _, err := fmt.Sscanf(line, "PCR %d changed:", &pcr); err == nil {
			pcrs = append(pcrs, pcr)
		}
	}
	return pcrs
}

// expectAttested waits for the credential, then for the VM to power off.
func expectAttested(ctx context.Context, t *testing.T, vm *VM, name, id string) {
	t.Helper()
	m := expectBoot(ctx, t, vm, reAttested.String())
	if m[1] != name || m[2] != id {
		t.Errorf("attested as %s (%s), want %s (%s)", m[1], m[2], name, id)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Errorf("VM did not power off: %v", err)
	}
	vm.LogTimings()
}

// lastAudit returns the last attest entry of machine id in the server's
// audit log.
func lastAudit(t *testing.T, sr *Sealroot, id string) audit.Entry {
	t.Helper()
	f, err := os.Open(filepath.Join(sr.StateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last audit.Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e audit.Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.MachineID == id && e.Action == "attest" {
			last = e
		}
	}
	if last.Action == "" {
		t.Fatalf("audit.log has no attest entry for %s", id)
	}
	return last
}

// prediction predicts from what the server serves now.
func prediction(t *testing.T, sr *Sealroot) *predict.Prediction {
	t.Helper()
	p, err := predict.NewCache(predict.Files{
		IPXE: ipxeEFI, UKI: filepath.Join(sr.ArtifactsDir(), UKIName), UKIName: UKIName, Cmdline: defaultCmdline,
	}).Prediction()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recordFixture writes the verified boot state machine id reported and the
// server's prediction to $SEALROOT_UKI_FIXTURE/name (for
// server/predict/testdata).
func recordFixture(ctx context.Context, t *testing.T, sr *Sealroot, id, name string) {
	dir := os.Getenv("SEALROOT_UKI_FIXTURE")
	if dir == "" {
		return
	}
	dir = filepath.Join(dir, name)
	m, err := sr.Machine(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"bootstate.json": m.Reported, "prediction.json": prediction(t, sr)} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("recorded the boot state and prediction in %s", dir)
}

// serveUKIBoot runs DHCP, TFTP (ipxe.efi) and HTTP (script and the UKI in
// dir, booted with cmdline) in lab until t ends: boot services that are
// not sealroot's.
func serveUKIBoot(t *testing.T, lab *Lab, dir, cmdline string) {
	server := lab.Addr.Addr().String()
	base := "http://" + server + ":8080"
	lab.ServeRouterAdvertisements(t)
	lab.ServeDHCP(t, func(req *dhcpv4.DHCPv4, acked int) string {
		if IsIPXE(req) && acked > 0 {
			return base + boothttp.ScriptPath + "?arch=" + string(ipxe.ArchEFIx64)
		}
		return "ipxe.efi"
	})
	logger := hclog.New(&hclog.LoggerOptions{Output: testenv.Writer(t, "mitm: "), Level: hclog.Info})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var pc net.PacketConn
	var ln net.Listener
	err := lab.Do(func() (err error) {
		if pc, err = net.ListenPacket("udp4", server+":69"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", server+":8080")
		return err
	})
	if err != nil {
		t.Fatalf("mitm listen: %v", err)
	}
	scripts := func(ctx context.Context, r boothttp.ScriptRequest) ([]byte, error) {
		return ipxe.Render(ipxe.Params{BaseURL: base + strings.TrimSuffix(boothttp.ArtifactPrefix, "/"), Arch: r.Arch, UKI: UKIName, Cmdline: cmdline})
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		// tftp binds a socket per transfer: run it in the lab.
		lab.Do(func() error { return tftp.New(map[string]string{"ipxe.efi": ipxeEFI}, logger).Serve(ctx, pc) })
	}()
	go func() {
		defer wg.Done()
		boothttp.Serve(ctx, ln, boothttp.NewHandler(dir, scripts, logger), logger)
	}()
}

// relayUDP forwards datagrams sent to addr in from to addr in to, and the
// answers back, until t ends: one upstream socket per client.
func relayUDP(t *testing.T, from, to *Lab, addr string) {
	var down net.PacketConn
	if err := from.Do(func() (err error) { down, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("relay listen: %v", err)
	}
	var mu sync.Mutex
	ups := map[string]net.Conn{}
	t.Cleanup(func() {
		down.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range ups {
			c.Close()
		}
	})
	upstream := func(client net.Addr) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := ups[client.String()]; ok {
			return c, nil
		}
		var c net.Conn
		if err := to.Do(func() (err error) { c, err = net.Dial("udp4", addr); return err }); err != nil {
			return nil, err
		}
		ups[client.String()] = c
		go func() {
			buf := make([]byte, 65535)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				down.WriteTo(buf[:n], client)
			}
		}()
		return c, nil
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, client, err := down.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			c, err := upstream(client)
			if err != nil {
				t.Logf("relay: %v", err)
				continue
			}
			c.Write(buf[:n])
		}
	}()
}

// appendImageVersion appends to a compressed initramfs an uncompressed
// newc archive holding etc/sealroot-image with version.
func appendImageVersion(initrd []byte, version string) ([]byte, error) {
	return AppendArchive(initrd,
		cpio.Directory("etc", 0o755),
		cpio.StaticRecord([]byte(version+"\n"), cpio.Info{Name: "etc/sealroot-image", Mode: cpio.S_IFREG | 0o644}),
	)
}
