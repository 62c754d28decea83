package server

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/config"
)

// TestLifecycle: New, Listen on port 0 reports the bound ports, Serve
// answers until its context ends, Close is safe twice.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(PKIDir(dir), pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Config{StateDir: dir, AttestAddr: "127.0.0.1:0", AdminSocket: filepath.Join(dir, "admin.sock"),
		ISCSI: &config.ISCSIConfig{Listen: "127.0.0.1:0"}}
	srv, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Serve(ctx); err == nil {
		t.Fatal("Serve before Listen succeeded")
	}
	addrs, err := srv.Listen()
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	for name, a := range map[string]net.Addr{"attest": addrs.Attest, "iscsi": addrs.ISCSI} {
		_, port, err := net.SplitHostPort(a.String())
		if err != nil || port == "0" {
			t.Errorf("%s address = %v; want the bound port", name, a)
		}
	}
	if addrs.Admin != cfg.AdminSocket || addrs.BootHTTP != nil {
		t.Errorf("addrs = %+v; want the admin socket and no boot listeners", addrs)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	if _, err := client.New(addrs.Admin).Machines(ctx); err != nil {
		t.Errorf("admin API: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}
