package boot

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/ipxe"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/uki"
)

// scriptURL matches the artifact URLs an iPXE script fetches.
var scriptURL = regexp.MustCompile(`http://\S+`)

// TestScriptsURLsServed renders the boot script of each arch and
// fetches every URL in it from the boot HTTP handler serving the artifacts
// directory: each must be found (the script once pointed at /vmlinuz while
// the handler serves /artifacts/vmlinuz, and every PXE boot looped on 404).
func TestScriptsURLsServed(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		arch    ipxe.Arch
		efiBoot string
		uki     string
		want    []string // artifact names fetched
	}{
		{"bios_kernel_initrd", ipxe.ArchBIOS, "", "", []string{"vmlinuz", "initramfs.cpio.gz"}},
		{"efi_kernel_initrd", ipxe.ArchEFIx64, config.EFIBootKernel, "", []string{"vmlinuz", "initramfs.cpio.gz"}},
		{"efi_uki", ipxe.ArchEFIx64, "", "sealroot.efi", []string{"sealroot.efi"}},
	}
	for _, name := range []string{"vmlinuz", "initramfs.cpio.gz", "sealroot.efi"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &config.BootConfig{ServerIP: "192.0.2.1", UKI: tc.uki, EFIBoot: tc.efiBoot}
			b.Defaults(t.TempDir())
			scripts := Scripts(b, netip.MustParseAddr(b.ServerIP), nil, hclog.NewNullLogger())
			srv := httptest.NewServer(boothttp.NewHandler(dir, scripts, nil))
			defer srv.Close()
			script := get(t, srv.URL+boothttp.ScriptPath+"?arch="+string(tc.arch))
			urls := scriptURL.FindAllString(script, -1)
			if len(urls) != len(tc.want) {
				t.Fatalf("script URLs %q, want %d:\n%s", urls, len(tc.want), script)
			}
			for i, raw := range urls {
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatal(err)
				}
				if u.Host != "192.0.2.1:8080" {
					t.Errorf("URL %s: host %s, want 192.0.2.1:8080", raw, u.Host)
				}
				if body := get(t, srv.URL+u.Path); body != tc.want[i] {
					t.Errorf("GET %s = %q, want %q", u.Path, body, tc.want[i])
				}
			}
		})
	}
}

// The attestation servers of boot.attest_servers are on the kernel command
// line of every script, so agents try them all.
func TestScriptsListAttestServers(t *testing.T) {
	for _, arch := range []ipxe.Arch{ipxe.ArchBIOS, ipxe.ArchEFIx64} {
		b := &config.BootConfig{ServerIP: "192.0.2.1", EFIBoot: config.EFIBootKernel,
			AttestServers: []string{"192.0.2.1:4433", "192.0.2.2:4433"}}
		b.Defaults(t.TempDir())
		scripts := Scripts(b, netip.MustParseAddr(b.ServerIP), nil, hclog.NewNullLogger())
		srv := httptest.NewServer(boothttp.NewHandler(t.TempDir(), scripts, nil))
		script := get(t, srv.URL+boothttp.ScriptPath+"?arch="+string(arch))
		srv.Close()
		if want := " sealroot.server=192.0.2.1:4433,192.0.2.2:4433"; !strings.Contains(script, want) {
			t.Errorf("%s script lacks %q:\n%s", arch, want, script)
		}
	}
}

// TestScriptsDefaultUKI: by default UEFI clients boot the UKI the
// server builds from the kernel, initramfs and command line, and a changed
// initramfs is in the UKI served after the next script request, so the
// firmware's and systemd-stub's measurements show the change. BIOS
// clients still get the kernel and initramfs.
func TestScriptsDefaultUKI(t *testing.T) {
	testenv.RequireTools(t, uki.DefaultStub)
	b := &config.BootConfig{ServerIP: "192.0.2.1"}
	state := t.TempDir()
	b.Defaults(state)
	if err := os.MkdirAll(b.ArtifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{b.Kernel: "kernel", b.Initrd: "initrd one"} {
		if err := os.WriteFile(filepath.Join(b.ArtifactsDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ukis := UKIBuilder(b, state)
	if ukis == nil {
		t.Fatal("default boot config builds no UKI")
	}
	srv := httptest.NewServer(boothttp.NewHandler(b.ArtifactsDir, Scripts(b, netip.MustParseAddr(b.ServerIP), ukis, hclog.NewNullLogger()), nil))
	defer srv.Close()
	servedInitrd := func() string {
		t.Helper()
		script := get(t, srv.URL+boothttp.ScriptPath+"?arch="+string(ipxe.ArchEFIx64))
		urls := scriptURL.FindAllString(script, -1)
		if len(urls) != 1 || !strings.HasSuffix(urls[0], "/"+config.DefaultUKI) {
			t.Fatalf("UEFI script URLs %q, want the UKI alone:\n%s", urls, script)
		}
		u, _ := url.Parse(urls[0])
		secs, err := uki.Sections([]byte(get(t, srv.URL+u.Path)))
		if err != nil {
			t.Fatalf("served UKI: %v", err)
		}
		for _, s := range secs {
			if s.Name == uki.SectionInitrd {
				return string(s.Data[:s.VirtualSize])
			}
		}
		t.Fatal("served UKI has no .initrd")
		return ""
	}
	if got := servedInitrd(); got != "initrd one" {
		t.Fatalf("UKI .initrd = %q, want the initramfs", got)
	}
	if err := os.WriteFile(filepath.Join(b.ArtifactsDir, b.Initrd), []byte("initrd two, tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := servedInitrd(); got != "initrd two, tampered" {
		t.Fatalf("after the initramfs changed: UKI .initrd = %q", got)
	}
	bios := get(t, srv.URL+boothttp.ScriptPath+"?arch="+string(ipxe.ArchBIOS))
	if urls := scriptURL.FindAllString(bios, -1); len(urls) != 2 {
		t.Fatalf("BIOS script URLs %q, want kernel and initramfs", urls)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	return string(b)
}

func TestPredictor(t *testing.T) {
	if p := Predictor(nil, "/s"); p != nil {
		t.Errorf("Predictor(no boot services) = %v, want nil", p)
	}
	if p := Predictor(&config.BootConfig{ServerIP: "10.0.0.1", EFIBoot: config.EFIBootKernel}, "/s"); p != nil {
		t.Errorf("Predictor(no UKI) = %v, want nil", p)
	}
	if p := Predictor(&config.BootConfig{ServerIP: "10.0.0.1"}, "/s"); p == nil {
		t.Errorf("Predictor(default: the built UKI) = nil")
	}
	// A UKI that does not exist yet: predictions fail at attestation time
	// with a clear error, not at start.
	p := Predictor(&config.BootConfig{ServerIP: "10.0.0.1", UKI: "uki.efi"}, t.TempDir())
	if p == nil {
		t.Fatal("Predictor(UKI) = nil")
	}
	if _, err := p.Prediction(); err == nil {
		t.Error("Prediction of a missing UKI succeeded")
	}
}

// TestDHCPConfigHTTPBoot: http_boot becomes the artifact's path on the boot
// HTTP server, which serves ArtifactsDir there; a bad name is refused.
func TestDHCPConfigHTTPBoot(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	cfg, err := dhcpConfig(&config.BootConfig{HTTPBoot: "sealroot-signed.efi"}, ip)
	if err != nil || cfg.HTTPBootPath != boothttp.ArtifactPrefix+"sealroot-signed.efi" {
		t.Errorf("dhcpConfig(http_boot) = %q, %v; want %q", cfg.HTTPBootPath, err, boothttp.ArtifactPrefix+"sealroot-signed.efi")
	}
	if _, err := dhcpConfig(&config.BootConfig{HTTPBoot: "../etc/passwd"}, ip); err == nil {
		t.Error("dhcpConfig(http_boot ../etc/passwd) succeeded")
	}
	if cfg, err := dhcpConfig(&config.BootConfig{}, ip); err != nil || cfg.HTTPBootPath != "" {
		t.Errorf("dhcpConfig(no http_boot) = %q, %v; want no HTTP boot", cfg.HTTPBootPath, err)
	}
}

// A script rendered while downloads are at their pace pauses, after a
// refused download, as long as the server booked (rounded up to seconds);
// otherwise it keeps iPXE's default pause.
func TestScriptsRetryPause(t *testing.T) {
	b := &config.BootConfig{ServerIP: "192.0.2.1"}
	b.Defaults(t.TempDir())
	scripts := Scripts(b, netip.MustParseAddr(b.ServerIP), nil, hclog.NewNullLogger())
	for _, tc := range []struct {
		name  string
		pause time.Duration
		want  string
	}{
		{"idle", 0, fmt.Sprintf("sleep %d\n", ipxe.DefaultRetrySeconds)},
		{"busy_rounds_up", 2300 * time.Millisecond, "sleep 3\n"},
		{"busy_short", 250 * time.Millisecond, "sleep 1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, err := scripts(context.Background(), boothttp.ScriptRequest{Arch: ipxe.ArchBIOS, RetryPause: tc.pause})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(script), tc.want) {
				t.Errorf("script with pause %v lacks %q:\n%s", tc.pause, tc.want, script)
			}
		})
	}
}

// TestCloseAfterServe: Serve closes its listeners when its context ends;
// the Close that follows (sealroot serve's SIGINT path) is then a clean
// stop, not an error ("use of closed network connection" was logged).
func TestCloseAfterServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Services{http: ln, tftp: pc}
	ln.Close()
	pc.Close()
	if err := s.Close(); err != nil {
		t.Errorf("Close after the listeners closed = %v; want nil", err)
	}
}
