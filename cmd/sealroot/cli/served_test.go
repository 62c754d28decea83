package cli_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/boot/dhcp"
	"github.com/sealroot/sealroot/server/config"
)

// freePort returns a loopback port nothing listens on now, of network
// ("tcp" or "udp").
func freePort(t *testing.T, network string) uint16 {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr()
		c.Close()
	} else {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr()
		ln.Close()
	}
	_, port, _ := net.SplitHostPort(addr.String())
	var p uint16
	for _, c := range port {
		p = p*10 + uint16(c-'0')
	}
	return p
}

// A real daemon serves an artifact over HTTP and a file over TFTP to real
// clients on loopback; the metrics endpoint counts the requests and
// bytes, `status` counts what is served, and the views answer.
func TestServedMetrics(t *testing.T) {
	dir, err := os.MkdirTemp("", "sealroot-srv-") // short: the socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := pki.Init(server.PKIDir(dir), pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	kernel := bytes.Repeat([]byte("k"), 100_000)
	ipxeFile := bytes.Repeat([]byte("i"), 3000)
	art, ipxeDir := filepath.Join(dir, "artifacts"), filepath.Join(dir, "ipxe")
	os.MkdirAll(art, 0o755)
	os.MkdirAll(ipxeDir, 0o755)
	os.WriteFile(filepath.Join(art, "vmlinuz"), kernel, 0o644)
	os.WriteFile(filepath.Join(ipxeDir, dhcp.DefaultBIOSFile), ipxeFile, 0o644)
	httpPort, tftpPort := freePort(t, "tcp"), freePort(t, "udp")
	cfg := config.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"),
		MetricsAddr: "127.0.0.1:0",
		Boot: &config.BootConfig{ServerIP: "127.0.0.1", HTTPPort: httpPort, TFTPPort: tftpPort,
			ArtifactsDir: art, IPXEDir: ipxeDir, EFIBoot: config.EFIBootKernel}}
	addrs := serveDaemon(t, cfg)

	resp, err := http.Get("http://" + addrs.BootHTTP.String() + "/artifacts/vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, kernel) {
		t.Fatalf("GET vmlinuz: %d bytes, status %d", len(got), resp.StatusCode)
	}
	resp, err = http.Get("http://" + addrs.BootHTTP.String() + "/artifacts/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c, err := pintftp.NewClient(addrs.BootTFTP.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	wt, err := c.Receive(dhcp.DefaultBIOSFile, "octet")
	if err != nil {
		t.Fatalf("tftp: %v", err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil || buf.Len() != len(ipxeFile) {
		t.Fatalf("tftp got %d bytes, %v", buf.Len(), err)
	}

	body := scrape(t, addrs.Metrics.String())
	for _, want := range []string{
		`sealroot_served_requests_total{result="2xx",service="http"} 1`,
		`sealroot_served_requests_total{result="4xx",service="http"} 1`,
		`sealroot_served_requests_total{result="ok",service="tftp"}`,
		`sealroot_served_bytes_total{direction="sent",service="tftp"} 3000`,
		`sealroot_build_info{`,
		`sealroot_certificate_expiry_timestamp_seconds{cert="ca"}`,
		`sealroot_store_size_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The HTTP bytes include the 404's body: at least the kernel's.
	if n := metricValue(body, `sealroot_served_bytes_total{direction="sent",service="http"}`); n < float64(len(kernel)) {
		t.Errorf("/metrics http bytes sent = %v, want at least %d", n, len(kernel))
	}

	sock := cfg.AdminSocket
	r := run(t, sock, "", "--json", "status")
	var st api.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Served == nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	r = run(t, sock, "", "status")
	if !strings.Contains(r.stdout, "Tunnel peers:") || !strings.Contains(r.stdout, "iSCSI sessions:") {
		t.Errorf("status lacks the served counts:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"tunnel", "list"}, {"iscsi", "sessions"}, {"dhcp", "leases"}, {"nfs", "exports"}} {
		r := run(t, sock, "", append([]string{"--json"}, args...)...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("%v --json = exit %d, %q %q; want []", args, r.code, r.stdout, r.stderr)
		}
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of the sample named series (name and
// labels as exposed), or -1.
func metricValue(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
