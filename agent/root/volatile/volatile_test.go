package volatile

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealroot/sealroot/wire"
)

type call struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func record(calls *[]call) func(source, target, fstype string, flags uintptr, data string) error {
	return func(source, target, fstype string, flags uintptr, data string) error {
		*calls = append(*calls, call{source, target, fstype, flags, data})
		return nil
	}
}

func payload(params map[string]string) *wire.Payload {
	return &wire.Payload{Root: wire.RootPlan{Kind: wire.RootVolatile, Params: params},
		Tunnel: &wire.TunnelPlan{Address: "10.200.0.7/32", ServerAddr: "10.200.0.1"}}
}

func TestMountsOverNFS(t *testing.T) {
	var calls []call
	top := t.TempDir()
	s := &Stage{Mountpoint: filepath.Join(top, "newroot"), Dir: filepath.Join(top, "sealroot"), SysMount: record(&calls), TmpfsSize: "50%"}
	p := payload(map[string]string{wire.NFSServer: "10.200.0.1", wire.NFSPath: "/0123456789abcdef", wire.VolatileVia: wire.RootNFS})
	if _, err := s.Mount(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 {
		t.Fatalf("mounts = %+v; want base, tmpfs, overlay", calls)
	}
	base, rw, ov := calls[0], calls[1], calls[2]
	if base.fstype != "nfs4" || base.flags&unix.MS_RDONLY == 0 {
		t.Errorf("base mount = %+v; want read-only nfs4", base)
	}
	if rw.fstype != "tmpfs" || !strings.Contains(rw.data, "size=50%") {
		t.Errorf("writable layer = %+v; want tmpfs size=50%%", rw)
	}
	if ov.fstype != "overlay" || !strings.Contains(ov.data, "lowerdir="+base.target) || !strings.Contains(ov.data, "upperdir="+rw.target+"/upper") {
		t.Errorf("overlay = %+v", ov)
	}
}

func TestMountsOverISCSI(t *testing.T) {
	var calls []call
	var baseDir string
	top := t.TempDir()
	s := &Stage{Mountpoint: filepath.Join(top, "newroot"), Dir: filepath.Join(top, "sealroot"), SysMount: record(&calls),
		ISCSI: func(_ context.Context, _ *wire.Payload, dir string) error { baseDir = dir; return nil }}
	if _, err := s.Mount(context.Background(), payload(map[string]string{wire.VolatileVia: wire.ViaISCSI})); err != nil {
		t.Fatal(err)
	}
	if baseDir != filepath.Join(top, "sealroot", "base") || len(calls) != 2 || calls[1].fstype != "overlay" {
		t.Fatalf("base at %q, mounts %+v; want the iSCSI base under tmpfs and overlay", baseDir, calls)
	}
}

func TestRefusals(t *testing.T) {
	s := &Stage{Dir: t.TempDir(), Mountpoint: t.TempDir(), SysMount: record(new([]call))}
	for name, p := range map[string]*wire.Payload{
		"unknown via":       payload(map[string]string{wire.VolatileVia: "floppy"}),
		"iscsi without one": payload(map[string]string{wire.VolatileVia: wire.ViaISCSI}),
		"other kind":        {Root: wire.RootPlan{Kind: wire.RootNFS}},
	} {
		if _, err := s.Mount(context.Background(), p); !errors.Is(err, ErrPlan) {
			t.Errorf("%s: Mount = %v; want ErrPlan", name, err)
		}
	}
}
