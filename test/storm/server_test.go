package storm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/test/testenv"
)

// Artifact names and the sizes used when no built file is found: the
// kernel is Debian's 6.1 vmlinuz the initramfs builder fetches, the
// initramfs the default zstd image (docs/architecture.md: 5.9 MiB), the
// iPXE binary Debian's undionly.kpxe.
const (
	kernelName, initrdName, ipxeName = "vmlinuz", "initramfs.cpio.zst", "undionly.kpxe"
	kernelSize                       = 8247232
	initrdSize                       = 6207570
	ipxeSize                         = 74213
)

// Ports of the server, on serverIP.
const (
	attestPort = 4433
	httpPort   = 8080
	tunnelPort = 51820
	iscsiPort  = 3260 // on the server's tunnel address
)

// rootImage is the image every machine's iSCSI root is a copy-on-write
// volume of.
const rootImage = "stormroot"

// rootFileName is the one file of the root image.
const rootFileName = "usr.bin"

// importRoot imports the machines' root image: an ext4 file system whose
// one file, rootFileName, of random bytes, is larger than what a machine
// reads; it returns the file's content.
func (d *daemon) importRoot(ctx context.Context, t *testing.T) ([]byte, error) {
	tree := filepath.Join(d.dir, "root-tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return nil, err
	}
	data := make([]byte, rootReadSize()+(1<<20))
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(tree, rootFileName), data, 0o644); err != nil {
		return nil, err
	}
	img, err := d.admin().ImportImage(ctx, rootImage, tree)
	if err != nil {
		return nil, fmt.Errorf("import root image: %w", err)
	}
	// The store marks bases immutable where it can; let TempDir remove it.
	t.Cleanup(func() {
		bases, _ := filepath.Glob(filepath.Join(d.dir, "state", "images", "bases", "*"))
		for _, b := range bases {
			exec.Command("chattr", "-i", b).Run()
		}
	})
	fmt.Printf("storm root image %s: %d bytes of ext4; each machine reads %d MiB of it in READs of %s\n",
		rootImage, img.Size, rootReadSize()>>20, readSizes())
	return data, nil
}

// readSizes describes the sizes of the machines' root READs.
func readSizes() string {
	if kind, _ := stormRootKind(); kind == rootKindNFS {
		return fmt.Sprintf("%d KiB (NFS)", nfsReadChunk>>10)
	}
	return describeSizes(rootReadSizes())
}

// serverName is the DNS name in the server certificate.
const serverName = "sealroot.storm"

// daemon is the `sealroot serve` process under test.
type daemon struct {
	cmd    *exec.Cmd
	dir    string
	socket string
	ca     []byte // CA certificate, PEM
	sizes  map[string]int64
	srcs   map[string]string // where each artifact came from
}

// startDaemon builds sealroot, initialises its PKI and artifacts in a
// temporary directory and runs `sealroot serve` in tp's server namespace,
// with nfs-ganesha for NFS roots when rootKind is rootKindNFS.
func startDaemon(t *testing.T, tp *topo, rootKind string, limits map[string]any) *daemon {
	t.Helper()
	gobin := testenv.LookTool(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "sealroot")
	build := exec.Command(gobin, "build", "-o", bin, "../../cmd/sealroot")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build sealroot: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	if out, err := exec.Command(bin, "pki", "init", "--state-dir", state, "--dns", serverName).CombinedOutput(); err != nil {
		t.Fatalf("pki init: %v\n%s", err, out)
	}
	d := &daemon{dir: dir, socket: filepath.Join(dir, "admin.sock"), sizes: map[string]int64{}, srcs: map[string]string{}}
	arts, ipxeDir := filepath.Join(dir, "artifacts"), filepath.Join(dir, "ipxe")
	d.artifact(t, arts, kernelName, kernelSize, glob("../../build/cache/*/boot/vmlinuz-*", "/work/main/build/cache/*/boot/vmlinuz-*"))
	d.artifact(t, arts, initrdName, initrdSize, glob("../../build/initramfs.cpio.zst", "/work/main/build/initramfs.cpio.zst"))
	d.artifact(t, ipxeDir, ipxeName, ipxeSize, glob("/usr/lib/ipxe/undionly.kpxe"))
	var err error
	if d.ca, err = os.ReadFile(filepath.Join(state, "pki", "ca.crt")); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"state_dir": state, "attest_addr": netip.AddrPortFrom(serverIP, attestPort).String(),
		"admin_socket": d.socket, "log_level": cmp.Or(os.Getenv("SEALROOT_STORM_LOG"), "warn"),
		"boot": map[string]any{"server_ip": serverIP.String(), "http_port": httpPort, "artifacts_dir": arts,
			"ipxe_dir": ipxeDir, "kernel": kernelName, "initrd": initrdName, "cmdline": "console=ttyS0"},
		"tunnel": map[string]any{"prefix": "10.79.0.0/16", "endpoint": netip.AddrPortFrom(serverIP, tunnelPort).String(),
			"listen_port": tunnelPort, "netstack": os.Getenv("SEALROOT_STORM_NETSTACK") == "1"},
		"iscsi": map[string]any{"port": iscsiPort},
	}
	if limits != nil {
		cfg["limits"] = limits
	}
	if rootKind == rootKindNFS {
		testenv.LookTool(t, "ganesha.nfsd")
		cfg["nfs"] = map[string]any{} // its defaults: ganesha on the tunnel address, port 2049
	}
	switch tp.mode {
	case modeProxy:
		// DHCP on the bridge in the default mode, ProxyDHCP.
		cfg["boot"].(map[string]any)["dhcp_interface"] = dhcpBridge
	case modeFull:
		// Full DHCP on the bridge, a pool of exactly one address per
		// machine, ARP probes and stored leases as by default.
		boot := cfg["boot"].(map[string]any)
		boot["dhcp_interface"], boot["dhcp_mode"] = dhcpBridge, "full"
		boot["pool"] = map[string]any{"subnet": netip.PrefixFrom(serverIP, dhcpBits).Masked().String(),
			"start": poolStart.String(), "end": poolEnd(tp.size).String()}
	}
	cfgPath := filepath.Join(dir, "sealroot.json")
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd = tp.server.Command(context.Background(), bin, "serve", "--config", cfgPath)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("sealroot serve: %v", err)
	}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("serve: %s", sc.Text())
		}
	}()
	t.Cleanup(func() {
		d.cmd.Process.Signal(os.Interrupt)
		t := time.AfterFunc(20*time.Second, func() { d.cmd.Process.Kill() })
		defer t.Stop()
		<-logDone
		d.cmd.Wait()
	})
	return d
}

// glob returns the first file matching one of patterns, or "".
func glob(patterns ...string) string {
	for _, p := range patterns {
		if m, _ := filepath.Glob(p); len(m) > 0 {
			return m[0]
		}
	}
	return ""
}

// artifact puts name into dir: a copy of src when there is one, else
// size random bytes (incompressible, as compressed images are).
func (d *daemon) artifact(t *testing.T, dir, name string, size int64, src string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var r io.Reader = io.LimitReader(rand.Reader, size)
	d.srcs[name] = fmt.Sprintf("random, %d bytes (documented size)", size)
	if src != "" {
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r = f
		d.srcs[name] = src
	}
	n, err := io.Copy(out, r)
	if err != nil {
		t.Fatal(err)
	}
	d.sizes[name] = n
}

func (d *daemon) admin() *client.Client { return client.New(d.socket) }

// processCPU is the user and system CPU time of process pid so far, from
// /proc.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) <= 12 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// childrenCPU is the CPU time so far of the running children of process
// pid (the server's nfs-ganesha), from /proc.
func childrenCPU(pid int) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var cpu time.Duration
	for _, f := range stats {
		b, err := os.ReadFile(f)
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 {
			continue
		}
		// After the command name: state, then the parent's pid.
		if fs := strings.Fields(string(b[i+1:])); len(fs) > 1 && fs[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			cpu += processCPU(child)
		}
	}
	return cpu
}

// usage is the daemon's CPU time so far and its resident and peak
// resident memory, from /proc.
func (d *daemon) usage() (cpu time.Duration, rss, peak int64) {
	pid := d.cmd.Process.Pid
	cpu = processCPU(pid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(l, "VmRSS: %d kB", &kb); err == nil {
				rss = kb << 10
			}
			if _, err := fmt.Sscanf(l, "VmHWM: %d kB", &kb); err == nil {
				peak = kb << 10
			}
		}
	}
	return cpu, rss, peak
}
