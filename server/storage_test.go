package server

import (
	"context"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/config"
)

func TestISCSIConfigRefused(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.ISCSIConfig
		want string
	}{
		{"no_listener", config.ISCSIConfig{}, "needs a tunnel section or a listen address"},
		{"unspecified_address", config.ISCSIConfig{Listen: "0.0.0.0:3260"}, "want a specific ip:port"},
		{"not_an_address", config.ISCSIConfig{Listen: "localhost"}, "want a specific ip:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := pki.Init(PKIDir(dir), pki.InitOptions{}); err != nil {
				t.Fatal(err)
			}
			iscsi := tt.cfg
			srv, err := New(context.Background(), config.Config{StateDir: dir, ISCSI: &iscsi}, nil)
			if err == nil {
				srv.Close()
				t.Fatalf("New accepted iscsi %+v", tt.cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
		})
	}
}
