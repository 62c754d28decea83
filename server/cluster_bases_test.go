package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// baseMember configures a member that serves its bases to peers and
// plain iSCSI roots, with its own server certificate issued by the first
// member's CA (`sealroot pki issue`) when it is not the first.
func baseMember(t *testing.T, first string) func(string, *config.Config) {
	return func(dir string, cfg *config.Config) {
		if first != "" {
			os.Remove(filepath.Join(PKIDir(dir), pki.ServerCertFile))
			os.Remove(filepath.Join(PKIDir(dir), pki.ServerKeyFile))
			os.Remove(filepath.Join(PKIDir(dir), pki.CAKeyFile))
			if _, err := pki.Issue(PKIDir(first), PKIDir(dir), pki.IssueOptions{DNSNames: []string{"localhost"}}); err != nil {
				t.Fatal(err)
			}
		}
		cfg.Images = &config.ImagesConfig{PeerListen: "127.0.0.1:0"}
		cfg.ISCSI = &config.ISCSIConfig{Listen: "127.0.0.1:0"}
		t.Cleanup(func() { // GC clears the immutable flag so TempDir can go
			s, err := image.Open(image.Config{Dir: filepath.Join(dir, "images")})
			if err != nil {
				return
			}
			ims, _ := s.List()
			for _, im := range ims {
				s.Remove(im.Ref())
			}
			s.GC(nil)
		})
	}
}

func baseBytes(t *testing.T, m *member, digest string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.dir, "images", "bases", "sha256-"+digest+".img"))
	if err != nil {
		t.Fatalf("base sha256:%.12s on %s: %v", digest, m.dir, err)
	}
	return b
}

func sourceTree(t *testing.T, release string) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte(release), 0o644)
	os.WriteFile(filepath.Join(dir, "payload"), bytes.Repeat([]byte(release), 200000), 0o644)
	return dir
}

// Two servers built as `sealroot serve` builds them on one etcd, B with a
// certificate `pki issue` made from A's CA: an image imported on A is
// pulled on B by name and by digest (the same bytes, the same version
// number); a machine whose volatile root names an image only A holds
// attests on B, and B fetches the base before it readies the root; an
// image no running server holds is refused naming it.
func TestServersMoveBases(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	a := startMemberWith(t, c, prefix, "boot-a", "", baseMember(t, ""))
	b := startMemberWith(t, c, prefix, "boot-b", a.dir, baseMember(t, a.dir))

	osImage, err := a.admin.ImportImage(ctx, "os", sourceTree(t, "os"))
	if err != nil {
		t.Fatal(err)
	}
	desk, err := a.admin.ImportImage(ctx, "desk", sourceTree(t, "desk"))
	if err != nil {
		t.Fatal(err)
	}
	if ims, _ := b.admin.Images(ctx); len(ims) != 0 {
		t.Fatalf("B lists %v before any pull: image stores are per server", ims)
	}

	res, err := b.admin.PullImage(ctx, "os")
	if err != nil {
		t.Fatalf("pull os on B: %v", err)
	}
	if res.Digest != osImage.Digest || res.From != "boot-a" || len(res.Versions) != 1 || res.Versions[0].Version != 1 {
		t.Fatalf("pull os on B = %+v, want os@v1 sha256:%s from boot-a", res, osImage.Digest)
	}
	if !bytes.Equal(baseBytes(t, a, osImage.Digest), baseBytes(t, b, osImage.Digest)) {
		t.Fatal("B's base differs from A's")
	}
	if again, err := b.admin.PullImage(ctx, "sha256:"+osImage.Digest); err != nil || again.From != "" {
		t.Fatalf("pull by digest of a base B holds = %+v, %v; want nothing fetched", again, err)
	}

	// A volatile root on B of an image only A holds.
	agents, err := loadgen.NewAgents(ctx, rand.Reader, 1, loadgen.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := loadgen.Enroll(ctx, a.target, a.admin, agents); err != nil {
		t.Fatal(err)
	}
	id := wire.MachineID(agents[0].TPM.EKPublic())
	plan := wire.RootPlan{Kind: wire.RootVolatile, Params: map[string]string{wire.ImageParam: "desk", wire.VolatileVia: wire.ViaISCSI}}
	if _, err := a.admin.SetRoot(ctx, id, plan); err != nil {
		t.Fatal(err)
	}
	onB, err := b.target.Client(agents[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onB.AttestOnce(ctx); err != nil {
		t.Fatalf("attest on B with a volatile root of an image only A holds = %v, want a credential", err)
	}
	if !bytes.Equal(baseBytes(t, a, desk.Digest), baseBytes(t, b, desk.Digest)) {
		t.Fatal("B's desk base differs from A's")
	}
	ims, err := b.admin.Images(ctx)
	if err != nil || len(ims) != 2 {
		t.Fatalf("B's images = %+v, %v; want os@v1 and desk@v1", ims, err)
	}

	peers, err := b.admin.PeerImages(ctx)
	if err != nil || len(peers) != 1 || peers[0].Server != "boot-a" || len(peers[0].Images) != 2 {
		t.Fatalf("B's view of its peers' images = %+v, %v; want boot-a with os@v1 and desk@v1", peers, err)
	}

	_, err = b.admin.PullImage(ctx, "nope@v3")
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "nope@v3") || !strings.Contains(err.Error(), "no running peer holds it") {
		t.Fatalf("pull of an image no server holds = %v, want not found naming it", err)
	}
}
