package iscsi

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	initiator "github.com/sealroot/sealroot/agent/iscsi"
	"github.com/sealroot/sealroot/agent/root"
	"github.com/sealroot/sealroot/wire"
)

func payload() *wire.Payload {
	return &wire.Payload{
		Root: wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{
			wire.ISCSIPortal: "10.77.0.1:3260", wire.ISCSITarget: "iqn.t", wire.ISCSIInitiator: "iqn.i",
		}},
		Secrets: map[string][]byte{
			wire.SecretCHAPUser: []byte("u"), wire.SecretCHAPSecret: []byte("s1"),
			wire.SecretCHAPTargetUser: []byte("t"), wire.SecretCHAPTargetSecret: []byte("s2"),
		},
	}
}

func TestPlan(t *testing.T) {
	tg, fstype, err := Plan(payload())
	if err != nil {
		t.Fatal(err)
	}
	c := tg.Login.CHAP
	if tg.Portal != "10.77.0.1:3260" || tg.LUN != 0 || fstype != "ext4" || c.User != "u" || c.Secret != "s1" || c.TargetSecret != "s2" {
		t.Errorf("Plan() = %+v, %q", tg, fstype)
	}
	tests := []struct {
		name   string
		mangle func(p *wire.Payload)
	}{
		{"wrong_kind", func(p *wire.Payload) { p.Root.Kind = wire.RootNFS }},
		{"host_name_portal", func(p *wire.Payload) { p.Root.Params[wire.ISCSIPortal] = "sealroot.lab:3260" }},
		{"no_port", func(p *wire.Payload) { p.Root.Params[wire.ISCSIPortal] = "10.77.0.1" }},
		{"no_target", func(p *wire.Payload) { delete(p.Root.Params, wire.ISCSITarget) }},
		{"no_initiator", func(p *wire.Payload) { delete(p.Root.Params, wire.ISCSIInitiator) }},
		{"bad_lun", func(p *wire.Payload) { p.Root.Params[wire.ISCSILUN] = "-1" }},
		{"no_chap_secret", func(p *wire.Payload) { delete(p.Secrets, wire.SecretCHAPSecret) }},
		{"binary_user", func(p *wire.Payload) { p.Secrets[wire.SecretCHAPUser] = []byte{0, 1} }},
		{"equal_secrets", func(p *wire.Payload) { p.Secrets[wire.SecretCHAPTargetSecret] = []byte("s1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := payload()
			tt.mangle(p)
			if _, _, err := Plan(p); !errors.Is(err, ErrPlan) {
				t.Errorf("Plan() = %v, want %v", err, ErrPlan)
			}
		})
	}
}

func TestStageMount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "newroot")
	var mounted []string
	s := &Stage{
		Mountpoint: dir,
		Attach: func(_ context.Context, tg initiator.Target) (*initiator.Disk, error) {
			return &initiator.Disk{Device: "/dev/sdz"}, nil
		},
		MountFS: func(dev, d, fstype string) error {
			mounted = append(mounted, dev, d, fstype)
			return nil
		},
	}
	var _ root.Stage = s
	got, err := s.Mount(context.Background(), payload())
	if err != nil || got != dir || len(mounted) != 3 || mounted[0] != "/dev/sdz" || mounted[2] != "ext4" {
		t.Errorf("Mount() = %q, %v; mounted %v", got, err, mounted)
	}
	attachErr := errors.New("boom")
	s.Attach = func(context.Context, initiator.Target) (*initiator.Disk, error) { return nil, attachErr }
	if _, err := s.Mount(context.Background(), payload()); !errors.Is(err, attachErr) {
		t.Errorf("Mount() with failing attach = %v", err)
	}
}

func TestStageStartsKeeper(t *testing.T) {
	disk := &initiator.Disk{Device: "/dev/sdz", SID: 7}
	var kept *initiator.Disk
	keepErr := errors.New("no keeper")
	s := &Stage{
		Mountpoint: filepath.Join(t.TempDir(), "newroot"),
		Attach:     func(context.Context, initiator.Target) (*initiator.Disk, error) { return disk, nil },
		MountFS:    func(dev, d, fstype string) error { return nil },
		Keep: func(tg initiator.Target, d *initiator.Disk) error {
			if tg.Login.CHAP == nil || tg.Login.CHAP.Secret != "s1" {
				t.Errorf("keeper target without the CHAP credentials: %+v", tg.Login.CHAP)
			}
			kept = d
			return nil
		},
	}
	if _, err := s.Mount(context.Background(), payload()); err != nil || kept != disk {
		t.Fatalf("Mount() = %v; keeper got disk %v", err, kept)
	}
	s.Keep = func(initiator.Target, *initiator.Disk) error { return keepErr }
	if _, err := s.Mount(context.Background(), payload()); !errors.Is(err, keepErr) {
		t.Errorf("Mount() with failing keeper = %v, want %v", err, keepErr)
	}
}
