package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built is this command built once for the tests of the process that
// run it (linking it takes seconds; three tests run it); TestMain
// removes it.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildSealroot returns this command built into a temporary directory,
// building it on the first call.
func buildSealroot(t *testing.T) string {
	t.Helper()
	gobin := testenv.LookTool(t, "go")
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "sealroot-cmd-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "sealroot")
		if out, err := exec.Command(gobin, "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// daemon is a running `sealroot serve` process.
type daemon struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer // stderr so far
	done chan struct{}
}

func startDaemon(t *testing.T, bin string, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	d.cmd.Env = append(os.Environ(), env...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("daemon: %s", sc.Text())
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		d.cmd.Wait()
	})
	return d
}

// waitLog waits for a log line containing s, after the first skip of them.
func (d *daemon) waitLog(t *testing.T, s string, skip int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		n := strings.Count(d.log.String(), s)
		d.mu.Unlock()
		if n > skip {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("daemon never logged %q", s)
}

// stop sends sig and returns the exit code.
func (d *daemon) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	d.cmd.Process.Signal(sig)
	<-d.done
	d.cmd.Wait()
	return d.cmd.ProcessState.ExitCode()
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t *testing.T) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func writeJSON(t *testing.T, path string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func script(t *testing.T, port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/boot.ipxe?arch=bios", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestDaemonSignals runs the real daemon: readiness over NOTIFY_SOCKET
// once it serves, SIGHUP applies a new command line and log level and
// names the changes that need a restart, an invalid file is refused on
// reload without stopping the daemon, and SIGTERM stops it with exit
// code 0 and the admin socket removed.
func TestDaemonSignals(t *testing.T) {
	bin := buildSealroot(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if out, err := exec.Command(bin, "pki", "init", "--state-dir", state).CombinedOutput(); err != nil {
		t.Fatalf("pki init: %v\n%s", err, out)
	}
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	port := freePort(t)
	sock := filepath.Join(dir, "admin.sock")
	cfgPath := filepath.Join(dir, "sealroot.json")
	cfg := map[string]any{
		"state_dir": state, "attest_addr": "127.0.0.1:0", "admin_socket": sock, "log_level": "info",
		"boot":   map[string]any{"server_ip": "127.0.0.1", "http_port": port, "disable_tftp": true, "cmdline": "console=ttyS0"},
		"tunnel": map[string]any{"prefix": "10.213.0.0/24", "endpoint": "127.0.0.1:51999", "listen_port": freeUDPPort(t), "netstack": true},
	}
	writeJSON(t, cfgPath, cfg)
	d := startDaemon(t, bin, []string{"NOTIFY_SOCKET=" + notifyPath}, "serve", "--config", cfgPath)

	notify.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 256)
	n, err := notify.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify socket got %q, %v; want READY=1", buf[:n], err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("ready but no admin socket: %v", err)
	}
	if s := script(t, port); !strings.Contains(s, "console=ttyS0") {
		t.Fatalf("boot script before reload:\n%s", s)
	}

	// A reload of the command line and the log level applies both; a
	// changed attest_addr is named as needing a restart.
	cfg["boot"].(map[string]any)["cmdline"] = "console=ttyS0 console=tty0 reloaded=1"
	cfg["log_level"] = "debug"
	cfg["attest_addr"] = "127.0.0.1:1"
	writeJSON(t, cfgPath, cfg)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "configuration reloaded", 0)
	d.waitLog(t, "need a restart", 0)
	if s := script(t, port); !strings.Contains(s, "reloaded=1") {
		t.Errorf("boot script after reload lacks the new command line:\n%s", s)
	}
	d.mu.Lock()
	logged := d.log.String()
	d.mu.Unlock()
	for _, want := range []string{`applied=["log_level", "boot"]`, `fields=["attest_addr"]`, "tunnel up"} {
		if !strings.Contains(logged, want) {
			t.Errorf("reload log lacks %q", want)
		}
	}

	// An invalid file is refused; the daemon keeps serving.
	os.WriteFile(cfgPath, []byte(`{"log_level": "loud"} {}`), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "reload refused", 0)
	if s := script(t, port); !strings.Contains(s, "reloaded=1") {
		t.Errorf("daemon stopped serving after a refused reload:\n%s", s)
	}

	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	for _, want := range []string{"sealroot stopping: draining services", "tunnel down", "sealroot stopped"} {
		if !strings.Contains(d.log.String(), want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
	var msgs []string
	notify.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, err := notify.Read(buf)
		if err != nil {
			break
		}
		msgs = append(msgs, string(buf[:n]))
	}
	if !strings.Contains(strings.Join(msgs, " "), "STOPPING=1") {
		t.Errorf("notify messages after READY = %q, want STOPPING=1 among them", msgs)
	}
}

// TestDaemonStop_tunnel_down runs the daemon as root with its tunnel on a
// kernel TUN interface, in a network namespace the test creates: after
// SIGTERM the interface is gone.
func TestDaemonStop_tunnel_down(t *testing.T) {
	testenv.RequireRoot(t, "a network namespace and a TUN interface")
	ipTool := testenv.LookTool(t, "ip")
	bin := buildSealroot(t)
	ns := fmt.Sprintf("srdaemon%d", os.Getpid())
	ifname := fmt.Sprintf("srd%d", os.Getpid()%100000)
	if out, err := exec.Command(ipTool, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(ipTool, "netns", "del", ns).Run() })
	exec.Command(ipTool, "-n", ns, "link", "set", "lo", "up").Run()

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if out, err := exec.Command(bin, "pki", "init", "--state-dir", state).CombinedOutput(); err != nil {
		t.Fatalf("pki init: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "admin.sock")
	cfgPath := filepath.Join(dir, "sealroot.json")
	writeJSON(t, cfgPath, map[string]any{
		"state_dir": state, "attest_addr": "127.0.0.1:4433", "admin_socket": sock,
		"tunnel": map[string]any{"prefix": "10.214.0.0/24", "endpoint": "127.0.0.1:51820", "interface": ifname},
	})
	d := startDaemon(t, ipTool, nil, "netns", "exec", ns, bin, "serve", "--config", cfgPath)
	d.waitLog(t, "sealroot serving", 0)
	if out, err := exec.Command(ipTool, "-n", ns, "link", "show", ifname).CombinedOutput(); err != nil {
		t.Fatalf("tunnel interface %s missing while serving: %v\n%s", ifname, err, out)
	}
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if out, err := exec.Command(ipTool, "-n", ns, "link", "show", ifname).CombinedOutput(); err == nil {
		t.Errorf("tunnel interface %s still there after SIGTERM:\n%s", ifname, out)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}
