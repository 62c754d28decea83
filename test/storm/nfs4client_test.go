package storm

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/nfs"
	"github.com/sealroot/sealroot/test/netnstest"
	"github.com/sealroot/sealroot/test/testenv"
)

// TestNFSClient proves the storm's NFSv4.2 client against a real
// nfs-ganesha configured as the server configures it (minor versions 1
// and 2 only, the export open to one client address): it mounts, reads a
// file in pipelined READs and gets its bytes, and a missing file is
// NFS4ERR_NOENT.
func TestNFSClient(t *testing.T) {
	netnstest.RequireRoot(t)
	testenv.RequireTools(t, "ganesha.nfsd", "nsenter")
	ns := netnstest.New(t, "stnfs"+strconv.Itoa(os.Getpid()))
	addr := netip.MustParseAddr("10.76.0.1")
	if err := ns.Do(func() error { return netnstest.AddAddr("lo", netip.PrefixFrom(addr, 32)) }); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	exported := filepath.Join(dir, "export")
	if err := os.MkdirAll(exported, 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 33*nfsReadChunk+12345)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(exported, rootFileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := nfs.StartGanesha(ctx, nfs.GaneshaConfig{
		Dir:    filepath.Join(dir, "ganesha"),
		Config: nfs.Config{BindAddr: addr, DbusNamePrefix: "sealroot_storm", Graceless: true},
		Command: func(name string, args ...string) *exec.Cmd {
			return ns.Command(context.Background(), name, args...)
		},
		Logger: testenv.Logger(t, "ganesha", hclog.Warn),
	}, []nfs.Export{{ID: 1, Path: exported, Name: "m1", Client: addr}})
	if err != nil {
		t.Fatalf("StartGanesha = %v", err)
	}
	defer g.Close()

	var conn net.Conn
	err = ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, 2049).String(), 10*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	c, err := nfsMount(conn, "storm test", uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatalf("nfsMount = %v", err)
	}
	var ne *nfsError
	if _, err := c.lookup("m1", "missing"); !errors.As(err, &ne) || ne.op != opLookup || ne.status != 2 {
		t.Errorf("lookup of a missing file = %v, want LOOKUP's NFS4ERR_NOENT (2)", err)
	}
	fh, err := c.lookup("m1", rootFileName)
	if err != nil {
		t.Fatal(err)
	}
	stateid, err := c.open(fh)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	n, stateid, err := c.readAll(fh, stateid, int64(len(data)), func(off int64, p []byte) error {
		copy(got[off:], p)
		return nil
	})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("readAll = %d, %v; want %d bytes", n, err, len(data))
	}
	if string(got) != string(data) {
		t.Error("readAll read other bytes than the file's")
	}
	// The server drops the session, as when the lease expired while the
	// client's requests waited: the client recovers and reads on.
	if err := c.destroySession(); err != nil {
		t.Fatalf("DESTROY_SESSION = %v", err)
	}
	clear(got)
	n, stateid, err = c.readAll(fh, stateid, int64(len(data)), func(off int64, p []byte) error {
		copy(got[off:], p)
		return nil
	})
	if err != nil || n != int64(len(data)) || c.recovered != 1 {
		t.Fatalf("readAll after the session ended = %d, %v, %d recoveries; want %d bytes after 1", n, err, c.recovered, len(data))
	}
	if string(got) != string(data) {
		t.Error("readAll after recovery read other bytes than the file's")
	}
	if err := c.close(fh, stateid); err != nil {
		t.Error(err)
	}
}
