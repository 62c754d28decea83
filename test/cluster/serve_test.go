package cluster

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/store/etcdtest"
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

// serve is one `sealroot serve` process.
type serve struct {
	name   string
	dir    string // its state_dir
	socket string // its admin socket
	cmd    *exec.Cmd
	logged chan struct{} // closed when its stderr ends
}

// startServe runs `sealroot serve` named name in ns, on the etcd cluster
// at endpoints under prefix, taking attestations on attest. Its state
// directory dir holds its PKI and its etcd client certificate
// (etcdClientCert) already. It is stopped at the end of the
// test unless killed before.
func startServe(t *testing.T, ns *netnstest.NS, bin, name, dir, attest string, endpoints []string, prefix string) *serve {
	t.Helper()
	s := &serve{name: name, dir: dir, socket: filepath.Join(dir, "admin.sock"), logged: make(chan struct{})}
	cfg := map[string]any{
		"state_dir": dir, "attest_addr": attest, "admin_socket": s.socket,
		"log_level": cmp.Or(os.Getenv("SEALROOT_CLUSTER_LOG"), "info"),
		"store": map[string]any{"backend": "etcd", "endpoints": endpoints, "prefix": prefix, "server_name": name,
			"cert_file": etcdFile(dir, "cert"), "key_file": etcdFile(dir, "key"), "ca_file": etcdFile(dir, "ca")},
	}
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
		time.Sleep(100 * time.Millisecond)
	}
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

// etcdClientCert gives the server whose state directory is dir its etcd
// client certificate, named name and signed by ca (the members require
// one), with its key and ca's certificate, at etcdFile(dir, ...).
func etcdClientCert(t *testing.T, ca *etcdtest.CA, name, dir string) {
	t.Helper()
	cert, key := ca.Issue(t, name, false)
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	for file, from := range map[string]string{"cert": cert, "key": key, "ca": ca.File} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(etcdFile(dir, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// etcdFile is the path of the etcd client file ("cert", "key" or "ca") of
// the server whose state directory is dir.
func etcdFile(dir, file string) string { return filepath.Join(dir, "etcd", file+".pem") }

// etcdUsers turns etcd authentication on, with a user for each server
// named (the CN of its etcd client certificate, no password) whose one
// role grants readwrite on prefix only, as docs/architecture.md ("Trust in
// etcd") locks etcd down. The cluster's own Client stays root.
func etcdUsers(t *testing.T, etcd *etcdtest.Cluster, prefix string, names ...string) {
	t.Helper()
	ctx := t.Context()
	admin := etcd.Client()
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	steps := []func() error{
		func() error { _, err := admin.UserAddWithOptions(ctx, "root", "", noPassword); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "sealroot"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "sealroot", prefix, clientv3.GetPrefixRangeEnd(prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
	}
	for _, name := range names {
		steps = append(steps,
			func() error { _, err := admin.UserAddWithOptions(ctx, name, "", noPassword); return err },
			func() error { _, err := admin.UserGrantRole(ctx, name, "sealroot"); return err })
	}
	steps = append(steps, func() error { _, err := admin.AuthEnable(ctx); return err })
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd authentication: %v", err)
		}
	}
}
