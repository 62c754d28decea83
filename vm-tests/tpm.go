package vmtest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TPM is a software TPM identity: a swtpm state directory manufactured once
// with an EK certificate and a platform certificate issued by a local CA
// (swtpm_localca), SHA-256 PCR bank only. Each boot starts a fresh swtpm on
// the same state, so the identity survives reboots. A TPM serves one VM at a
// time.
type TPM struct {
	// Dir holds state/ (the TPM's NVRAM) and ca/ (the local CA).
	Dir string
}

// NewTPM manufactures a TPM in a fresh directory of t.TempDir.
func NewTPM(t testing.TB) *TPM {
	t.Helper()
	RequireTools(t, "swtpm", "swtpm_setup", "swtpm_localca")
	tp := &TPM{Dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tp.setup(ctx); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	return tp
}

func (tp *TPM) stateDir() string { return filepath.Join(tp.Dir, "state") }
func (tp *TPM) caDir() string    { return filepath.Join(tp.Dir, "ca") }

func (tp *TPM) setup(ctx context.Context) error {
	for _, d := range []string{tp.stateDir(), tp.caDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		"setup.conf": "create_certs_tool=/usr/bin/swtpm_localca\n" +
			"create_certs_tool_config=" + filepath.Join(tp.Dir, "localca.conf") + "\n" +
			"create_certs_tool_options=" + filepath.Join(tp.Dir, "localca.options") + "\n" +
			"active_pcr_banks=sha256\n",
		"localca.conf": "statedir=" + tp.caDir() + "\n" +
			"signingkey=" + filepath.Join(tp.caDir(), "signkey.pem") + "\n" +
			"issuercert=" + filepath.Join(tp.caDir(), "issuercert.pem") + "\n" +
			"certserial=" + filepath.Join(tp.caDir(), "certserial") + "\n",
		"localca.options": "--platform-manufacturer Test --platform-version 1.0 --platform-model QEMU\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tp.Dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", tp.stateDir(),
		"--config", filepath.Join(tp.Dir, "setup.conf"),
		"--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--overwrite")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("swtpm_setup: %w: %s", err, out)
	}
	return nil
}

// CACerts returns the local CA's root and intermediate (issuer)
// certificates, which chain the EK and platform certificates.
func (tp *TPM) CACerts() ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, name := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(tp.caDir(), name))
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: no PEM certificate", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// start runs swtpm on the state directory with its control channel (the
// one QEMU uses) on the unix socket sock, and waits for the socket.
// swtpm exits when QEMU closes the channel.
func (tp *TPM) start(ctx context.Context, sock, logFile string) (*proc, error) {
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+tp.stateDir(),
		"--ctrl", "type=unixio,path="+sock,
		"--terminate",
		"--log", "file="+logFile+",level=1")
	ownProcessGroup(cmd)
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(sock); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("swtpm exited before listening: %v (log %s)", p.err, logFile)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
