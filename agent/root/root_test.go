package root

import (
	"context"
	"errors"
	"testing"

	"github.com/sealroot/sealroot/wire"
)

func TestRegistry(t *testing.T) {
	r := NewRegistry(None{})
	s, err := r.Lookup(wire.RootNone)
	if err != nil {
		t.Fatalf("Lookup(none) = %v", err)
	}
	dir, err := s.Mount(context.Background(), &wire.Payload{Root: wire.RootPlan{Kind: wire.RootNone}})
	if dir != "" || err != nil {
		t.Errorf("None.Mount() = %q, %v; want \"\", nil", dir, err)
	}
	for _, kind := range []string{"", "iscsi", "NONE"} {
		if _, err := r.Lookup(kind); !errors.Is(err, ErrUnknownKind) {
			t.Errorf("Lookup(%q) = %v, want ErrUnknownKind", kind, err)
		}
	}
}

func TestInit(t *testing.T) {
	if got := Init(wire.RootPlan{}); got != DefaultInit {
		t.Errorf("Init(empty) = %q, want %q", got, DefaultInit)
	}
	if got := Init(wire.RootPlan{Init: "/lib/systemd/systemd"}); got != "/lib/systemd/systemd" {
		t.Errorf("Init(systemd) = %q", got)
	}
}
