package nfs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

func payload(kind string, params map[string]string) *wire.Payload {
	return &wire.Payload{Root: wire.RootPlan{Kind: kind, Params: params},
		Tunnel: &wire.TunnelPlan{Address: "10.200.0.7/32", ServerAddr: "10.200.0.1"}}
}

func goodParams() map[string]string {
	return map[string]string{wire.NFSServer: "10.200.0.1", wire.NFSPath: "/0123456789abcdef", wire.NFSVersion: "4.2", wire.NFSPort: "2049"}
}

func TestPlan(t *testing.T) {
	o, err := Plan(payload(wire.RootNFS, goodParams()))
	if err != nil {
		t.Fatal(err)
	}
	if o.Source != "10.200.0.1:/0123456789abcdef" {
		t.Errorf("source = %q", o.Source)
	}
	want := "vers=4.2,addr=10.200.0.1,port=2049,proto=tcp,hard,timeo=100,sec=sys,clientaddr=10.200.0.7"
	if o.Data != want {
		t.Errorf("data = %q\nwant   %q", o.Data, want)
	}
	p6 := goodParams()
	p6[wire.NFSServer] = "fd00::1"
	if o, err := Plan(payload(wire.RootNFS, p6)); err != nil || o.Source != "[fd00::1]:/0123456789abcdef" {
		t.Errorf("IPv6 source = %q, %v", o.Source, err)
	}
}

func TestPlanRefusals(t *testing.T) {
	for name, edit := range map[string]func(map[string]string){
		"no server":         func(p map[string]string) { delete(p, wire.NFSServer) },
		"hostname":          func(p map[string]string) { p[wire.NFSServer] = "nfs.example" },
		"option injection":  func(p map[string]string) { p[wire.NFSServer] = "10.0.0.1,sec=none" },
		"path injection":    func(p map[string]string) { p[wire.NFSPath] = "/x,addr=192.0.2.1" },
		"relative path":     func(p map[string]string) { p[wire.NFSPath] = "x" },
		"dotdot path":       func(p map[string]string) { p[wire.NFSPath] = "/a/../b" },
		"port zero":         func(p map[string]string) { p[wire.NFSPort] = "0" },
		"port text":         func(p map[string]string) { p[wire.NFSPort] = "2049,soft" },
		"nfsv3":             func(p map[string]string) { p[wire.NFSVersion] = "3" },
		"version injection": func(p map[string]string) { p[wire.NFSVersion] = "4.2,soft" },
	} {
		t.Run(name, func(t *testing.T) {
			p := goodParams()
			edit(p)
			if _, err := Plan(payload(wire.RootNFS, p)); !errors.Is(err, ErrPlan) {
				t.Fatalf("Plan = %v; want ErrPlan", err)
			}
		})
	}
}

type call struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func record(calls *[]call) MountFunc {
	return func(source, target, fstype string, flags uintptr, data string) error {
		*calls = append(*calls, call{source, target, fstype, flags, data})
		return nil
	}
}

func TestStageMounts(t *testing.T) {
	var calls []call
	dir := filepath.Join(t.TempDir(), "newroot")
	s := &Stage{Mountpoint: dir, SysMount: record(&calls)}
	got, err := s.Mount(context.Background(), payload(wire.RootNFS, goodParams()))
	if err != nil || got != dir {
		t.Fatalf("Mount = %q, %v", got, err)
	}
	if len(calls) != 1 || calls[0].fstype != "nfs4" || calls[0].flags != 0 || calls[0].target != dir {
		t.Fatalf("mounts = %+v; want one read-write nfs4 mount at %s", calls, dir)
	}
	if _, err := s.Mount(context.Background(), payload(wire.RootVolatile, goodParams())); !errors.Is(err, ErrPlan) {
		t.Fatalf("nfs stage given a volatile plan = %v; want ErrPlan", err)
	}
}

// FuzzPlan feeds arbitrary plan parameters: an accepted plan's option
// string holds exactly the options Plan writes, whatever the input.
func FuzzPlan(f *testing.F) {
	f.Add("10.200.0.1", "2049", "/0123456789abcdef", "4.2", "10.200.0.7/32")
	f.Add("fd00::1", "", "/a/b", "4.1", "")
	f.Add("10.0.0.1,sec=none", "1,soft", "/x,addr=1.2.3.4", "4.2,soft", "10.0.0.9/32,nolock")
	f.Fuzz(func(t *testing.T, server, port, path, vers, client string) {
		p := &wire.Payload{Root: wire.RootPlan{Kind: wire.RootNFS, Params: map[string]string{
			wire.NFSServer: server, wire.NFSPort: port, wire.NFSPath: path, wire.NFSVersion: vers}},
			Tunnel: &wire.TunnelPlan{Address: client}}
		o, err := Plan(p)
		if err != nil {
			return
		}
		keys := map[string]bool{}
		for _, opt := range strings.Split(o.Data, ",") {
			k, _, _ := strings.Cut(opt, "=")
			if keys[k] {
				t.Fatalf("option %q twice in %q", k, o.Data)
			}
			keys[k] = true
		}
		for k := range keys {
			switch k {
			case "vers", "addr", "port", "proto", "hard", "timeo", "sec", "clientaddr":
			default:
				t.Fatalf("unexpected option %q in %q", k, o.Data)
			}
		}
		if strings.Count(o.Source, ":/") != 1 && !strings.HasPrefix(o.Source, "[") {
			t.Fatalf("source %q", o.Source)
		}
	})
}
