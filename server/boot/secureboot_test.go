package boot

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	pintftp "github.com/pin/tftp/v3"

	"github.com/sealroot/sealroot/server/boot/dhcp"
	"github.com/sealroot/sealroot/server/boot/tftp"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/secureboot"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/uki"
)

// TestSignedIPXE: with a Secure Boot owner key in the state directory,
// Listen (signIPXE) signs Debian's ipxe.efi with it, TFTP serves the signed copy
// (sbverify accepts it with the owner certificate and refuses it with
// another); its Authenticode digest, which PCR 4 measures and the
// predictor computes, is Debian's. Without a key Debian's file is served
// as is. sbsign runs again only when an input changed.
func TestSignedIPXE(t *testing.T) {
	testenv.RequireTools(t, "sbsign", "sbverify", "/usr/lib/ipxe/ipxe.efi", "/usr/lib/ipxe/undionly.kpxe", uki.DefaultStub)
	state, other := t.TempDir(), t.TempDir()
	if p, signed := EFIIPXE(&config.BootConfig{IPXEDir: "/usr/lib/ipxe"}, state); signed || p != "/usr/lib/ipxe/ipxe.efi" {
		t.Fatalf("EFIIPXE without an owner key = %s, %v; want Debian's, unsigned", p, signed)
	}
	if err := secureboot.Init(SecureBootDir(state), "sealroot owner", false); err != nil {
		t.Fatal(err)
	}
	if err := secureboot.Init(other, "someone else", false); err != nil {
		t.Fatal(err)
	}
	b := &config.BootConfig{IPXEDir: "/usr/lib/ipxe"}
	logger := testenv.Logger(t, "", hclog.Debug)
	path, err := signIPXE(b, state, logger)
	if err != nil {
		t.Fatal(err)
	}
	signedPath := filepath.Join(SecureBootDir(state), secureboot.SignedIPXE)
	if path != signedPath {
		t.Fatalf("serving %s, want the signed copy %s", path, signedPath)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := tftp.New(map[string]string{dhcp.DefaultEFIFile: path}, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.Serve(ctx, conn) }()
	defer func() { cancel(); <-done }()

	got := filepath.Join(t.TempDir(), "ipxe.efi")
	fetchTFTP(t, conn.LocalAddr().String(), dhcp.DefaultEFIFile, got)
	if out, err := exec.Command("sbverify", "--cert", filepath.Join(SecureBootDir(state), secureboot.CertFile), got).CombinedOutput(); err != nil {
		t.Errorf("sbverify(owner) of the served ipxe.efi = %v: %s", err, out)
	}
	if out, err := exec.Command("sbverify", "--cert", filepath.Join(other, secureboot.CertFile), got).CombinedOutput(); err == nil {
		t.Errorf("sbverify(another owner's certificate) accepted the served ipxe.efi: %s", out)
	}
	debian, _ := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	served, _ := os.ReadFile(got)
	want, _ := uki.Authenticode(debian)
	if d, err := uki.Authenticode(served); err != nil || d != want {
		t.Errorf("Authenticode of the signed iPXE = %x, %v; want Debian's %x (PCR 4 unchanged)", d, err, want)
	}

	// A second start finds the copy current and leaves it alone.
	before, _ := os.Stat(signedPath)
	time.Sleep(10 * time.Millisecond)
	if _, err := signIPXE(b, state, logger); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(signedPath); !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the signed iPXE was signed again at the second start")
	}
}

func fetchTFTP(t *testing.T, addr, name, out string) {
	t.Helper()
	c, err := pintftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := wt.WriteTo(f); err != nil {
		t.Fatal(err)
	}
}

// TestSignedUKIBuild: with a Secure Boot owner key, the UKI the server
// builds is signed with it (sbverify accepts it) and its Authenticode
// digest is the unsigned build's; without a key it is not signed.
func TestSignedUKIBuild(t *testing.T) {
	testenv.RequireTools(t, "sbsign", "sbverify", uki.DefaultStub)
	build := func(t *testing.T, state string) string {
		b := &config.BootConfig{ServerIP: "192.0.2.1"}
		b.Defaults(state)
		if err := os.MkdirAll(b.ArtifactsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		stub, _ := os.ReadFile(uki.DefaultStub) // a PE image standing in for the kernel
		for name, data := range map[string][]byte{b.Kernel: stub, b.Initrd: []byte("initrd")} {
			if err := os.WriteFile(filepath.Join(b.ArtifactsDir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := UKIBuilder(b, state).Refresh(); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(b.ArtifactsDir, config.DefaultUKI)
	}
	plain := build(t, t.TempDir())
	state := t.TempDir()
	if err := secureboot.Init(SecureBootDir(state), "sealroot owner", false); err != nil {
		t.Fatal(err)
	}
	signed := build(t, state)
	cert := filepath.Join(SecureBootDir(state), secureboot.CertFile)
	if out, err := exec.Command("sbverify", "--cert", cert, signed).CombinedOutput(); err != nil {
		t.Errorf("sbverify(owner) of the built UKI = %v: %s", err, out)
	}
	if out, err := exec.Command("sbverify", "--cert", cert, plain).CombinedOutput(); err == nil {
		t.Errorf("the UKI built without an owner key verifies: %s", out)
	}
	a, _ := os.ReadFile(plain)
	b, _ := os.ReadFile(signed)
	da, _ := uki.Authenticode(a)
	db, err := uki.Authenticode(b)
	if err != nil || da != db {
		t.Errorf("Authenticode of the signed build %x, %v; want the unsigned build's %x", db, err, da)
	}
	if _, err := os.Stat(signed + ".unsigned"); err == nil {
		t.Error("the unsigned temporary file was left beside the UKI")
	}
}
