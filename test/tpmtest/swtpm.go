package tpmtest

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"
)

// SWTPMOptions configures SWTPM.
type SWTPMOptions struct {
	// EKCert provisions EK and platform certificates signed by a local CA
	// (swtpm_localca); CACerts then returns that CA.
	EKCert bool
	// RSAKeySize is the RSA EK's size: 0 or 2048 (certificate at
	// 0x01C00002), or 3072 (high range, 0x01C0001C) where libtpms has it.
	// swtpm_setup always adds an ECC P-384 EK (certificate at 0x01C00016).
	RSAKeySize int
}

// SWTPMInstance is a running swtpm. Its TPM is closed and the process
// stopped in t.Cleanup.
type SWTPMInstance struct {
	// TPM talks to the swtpm over its unix socket.
	TPM *SocketTPM
	// Dir holds the TPM state (its identity), CA and sockets.
	Dir string

	t       testing.TB
	sockDir string
	cmd     *exec.Cmd
	waitErr chan error
	ca      []*x509.Certificate
}

// SWTPM sets up a new swtpm (swtpm_setup: sha256 bank, RSA and ECC EKs,
// optionally certificates) in t.TempDir() and starts it.
func SWTPM(t testing.TB, opts SWTPMOptions) *SWTPMInstance {
	t.Helper()
	tools := []string{"swtpm", "swtpm_setup"}
	if opts.EKCert {
		tools = append(tools, "swtpm_localca")
	}
	for _, tool := range tools {
		testenv.LookTool(t, tool)
	}
	s := &SWTPMInstance{t: t, Dir: t.TempDir()}
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	s.sockDir = sockDir
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := s.setup(opts); err != nil {
		t.Fatalf("swtpm_setup: %v", err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *SWTPMInstance) setup(opts SWTPMOptions) error {
	state := filepath.Join(s.Dir, "state")
	ca := filepath.Join(s.Dir, "ca")
	for _, d := range []string{state, ca} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		"setup.conf": fmt.Sprintf("create_certs_tool=swtpm_localca\ncreate_certs_tool_config=%s\ncreate_certs_tool_options=%s\nactive_pcr_banks=sha256\n",
			filepath.Join(s.Dir, "localca.conf"), filepath.Join(s.Dir, "localca.options")),
		"localca.conf": fmt.Sprintf("statedir=%s\nsigningkey=%s\nissuercert=%s\ncertserial=%s\n",
			ca, filepath.Join(ca, "signkey.pem"), filepath.Join(ca, "issuercert.pem"), filepath.Join(ca, "certserial")),
		"localca.options": "--platform-manufacturer Test\n--platform-version 1.0\n--platform-model QEMU\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	args := []string{"--tpm2", "--tpmstate", state, "--config", filepath.Join(s.Dir, "setup.conf"), "--lock-nvram", "--overwrite"}
	if opts.EKCert {
		args = append(args, "--create-ek-cert", "--create-platform-cert")
	}
	if opts.RSAKeySize != 0 {
		args = append(args, "--rsa-keysize", fmt.Sprint(opts.RSAKeySize))
	}
	out, err := exec.Command("swtpm_setup", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if opts.EKCert {
		if s.ca, err = loadCerts(filepath.Join(ca, "swtpm-localca-rootca-cert.pem"), filepath.Join(ca, "issuercert.pem")); err != nil {
			return err
		}
	}
	return nil
}

func loadCerts(paths ...string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

func (s *SWTPMInstance) start() error {
	server := filepath.Join(s.sockDir, "tpm.sock")
	ctrl := filepath.Join(s.sockDir, "ctrl.sock")
	os.Remove(server)
	os.Remove(ctrl)
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+filepath.Join(s.Dir, "state"),
		"--server", "type=unixio,path="+server,
		"--ctrl", "type=unixio,path="+ctrl,
		"--flags", "not-need-init,startup-clear")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.waitErr = cmd, make(chan error, 1)
	go func() { s.waitErr <- cmd.Wait() }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("unix", server)
		if err == nil {
			s.TPM = &SocketTPM{conn: conn}
			return nil
		}
		select {
		case werr := <-s.waitErr:
			s.waitErr <- werr
			return fmt.Errorf("swtpm exited: %v: %s", werr, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("swtpm socket %s did not appear: %s", server, stderr.String())
		}
	}
}

// stop closes the connection and ends the process.
func (s *SWTPMInstance) stop() {
	if s.cmd == nil {
		return
	}
	if s.TPM != nil {
		s.TPM.Close()
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.waitErr:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-s.waitErr
	}
	s.cmd = nil
}

// Restart stops swtpm and starts it again on the same state: a machine
// reboot (PCRs reset, reset count up, same identity). s.TPM is replaced.
func (s *SWTPMInstance) Restart() error {
	s.stop()
	return s.start()
}

// CACerts returns the local CA's root and intermediate certificates, which
// sign the EK certificate, or nil without SWTPMOptions.EKCert.
func (s *SWTPMInstance) CACerts() []*x509.Certificate { return s.ca }

// SocketTPM is a transport.TPMCloser over one swtpm unix-socket connection.
// It is safe for concurrent use; commands are serialized.
type SocketTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

// maxResponse bounds a TPM response (TPM2 responses are a few KiB).
const maxResponse = 64 << 10

// Send implements transport.TPM: it writes one command and reads the
// response whose size is in its 10-byte header.
func (c *SocketTPM) Send(cmd []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, net.ErrClosed
	}
	if _, err := c.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("write command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < 10 || n > maxResponse {
		return nil, fmt.Errorf("response size %d out of range", n)
	}
	rsp := make([]byte, n)
	copy(rsp, hdr)
	if _, err := io.ReadFull(c.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

// Close closes the connection; closing twice is a no-op.
func (c *SocketTPM) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}
