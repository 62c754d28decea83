package cluster

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
)

// serverName is the DNS name in every server's certificate.
const serverName = "sealroot.cluster"

// buildSealroot builds the sealroot command into dir.
func buildSealroot(t *testing.T, dir string) string {
	t.Helper()
	gobin := testenv.LookTool(t, "go")
	bin := filepath.Join(dir, "sealroot")
	if out, err := exec.Command(gobin, "build", "-o", bin, "../../cmd/sealroot").CombinedOutput(); err != nil {
		t.Fatalf("go build sealroot: %v\n%s", err, out)
	}
	return bin
}

// sealroot runs the sealroot CLI and returns its output; a failure fails t.
func sealroot(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sealroot %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// sealrootJSON runs the sealroot CLI with --json and decodes its output
// into v; a failure fails t.
func sealrootJSON(t *testing.T, v any, bin string, args ...string) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"--json"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("sealroot --json %v: %v\n%s", args, err, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("sealroot --json %v: %v\n%s", args, err, out)
	}
}

// sealrootFails runs the sealroot CLI, which must fail, and returns its
// output.
func sealrootFails(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err == nil {
		t.Fatalf("sealroot %v succeeded, want an error:\n%s", args, out)
	}
	return string(out)
}

// serve is one `sealroot serve` process.
type serve struct {
	name   string
	dir    string // its state_dir
	socket string // its admin socket
	cmd    *exec.Cmd
	logged chan struct{} // closed when its stderr ends
}

// startServe runs `sealroot serve` named name in ns, on the etcd cluster
// at endpoints under prefix, taking attestations on attest, with the
// configuration sections of extra. Its state directory dir holds its PKI
// already. It is stopped at the end of the test unless killed before.
func startServe(t *testing.T, ns *netnstest.NS, bin, name, dir, attest string, endpoints []string, prefix string, extra map[string]any) *serve {
	t.Helper()
	s := &serve{name: name, dir: dir, socket: filepath.Join(dir, "admin.sock"), logged: make(chan struct{})}
	cfg := map[string]any{
		"state_dir": dir, "attest_addr": attest, "admin_socket": s.socket,
		"log_level": cmp.Or(os.Getenv("SEALROOT_CLUSTER_LOG"), "info"),
		// dir holds its etcd client certificate too (etcdClientCert).
		"store": map[string]any{"backend": "etcd", "endpoints": endpoints, "prefix": prefix, "server_name": name,
			"cert_file": etcdFile(dir, "cert"), "key_file": etcdFile(dir, "key"), "ca_file": etcdFile(dir, "ca")},
	}
	maps.Copy(cfg, extra)
	// Registered before the stop below, this runs after it.
	t.Cleanup(func() { removeImages(filepath.Join(dir, "images")) })
	path := filepath.Join(dir, "sealroot.json")
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = ns.Command(context.Background(), bin, "serve", "--config", path)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = s.cmd.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("sealroot serve %s: %v", name, err)
	}
	go func() {
		defer close(s.logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("serve %s: %s", name, sc.Text())
		}
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(os.Interrupt)
		k := time.AfterFunc(20*time.Second, func() { s.cmd.Process.Kill() })
		defer k.Stop()
		<-s.logged
		s.cmd.Wait()
	})
	s.waitReady(t)
	return s
}

// waitReady waits until the server answers on its admin socket.
func (s *serve) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.admin().Status(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealroot serve %s not answering after a minute: %v", s.name, err)
		}
		select {
		case <-s.logged:
			t.Fatalf("sealroot serve %s ended before it answered (its log above says why)", s.name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeImages forgets every image in the store at dir and deletes the
// bases, clearing their immutable flag, so that the test's directory can
// be removed.
func removeImages(dir string) {
	st, err := image.Open(image.Config{Dir: dir})
	if err != nil {
		return
	}
	ims, _ := st.List()
	for _, im := range ims {
		st.Remove(im.Ref())
	}
	st.GC(nil)
}

func (s *serve) admin() *client.Client { return client.New(s.socket) }

// kill ends the process with SIGKILL, as a crash or a power cut would:
// nothing of its shutdown runs.
func (s *serve) kill(t *testing.T) {
	t.Helper()
	// nsenter execs sealroot: the process is sealroot itself.
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", s.name, err)
	}
	<-s.logged
	s.cmd.Wait()
}
