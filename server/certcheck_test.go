package server_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/test/testenv"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/config"
)

// TestNew_certificate_dates: the server says at start, loudly, that its
// certificate is expired or not yet valid, and warns within 30 days of
// expiry.
func TestNew_certificate_dates(t *testing.T) {
	for name, tc := range map[string]struct {
		issued time.Time
		want   string
	}{
		"expired":       {time.Now().Add(-pki.ServerValidity - time.Hour), "[ERROR] sealroot: !!! SERVER CERTIFICATE UNUSABLE !!! the server certificate EXPIRED on"},
		"not_yet_valid": {time.Now().Add(48 * time.Hour), "[ERROR] sealroot: !!! SERVER CERTIFICATE UNUSABLE !!! the server certificate is not valid until"},
		"expires_soon":  {time.Now().Add(-pki.ServerValidity + 10*24*time.Hour), "[WARN]  sealroot: the server certificate expires on"},
		"valid":         {time.Now(), ""},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := pki.Init(server.PKIDir(dir), pki.InitOptions{Now: func() time.Time { return tc.issued }}); err != nil {
				t.Fatal(err)
			}
			var log testenv.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Name: "sealroot", Output: &log})
			srv, err := server.New(t.Context(), config.Config{StateDir: dir, AdminSocket: filepath.Join(dir, "admin.sock")}, logger)
			if err != nil {
				t.Fatal(err)
			}
			srv.Close()
			got := log.String()
			if tc.want == "" {
				if strings.Contains(got, "certificate") {
					t.Errorf("valid certificate logged:\n%s", got)
				}
			} else if !strings.Contains(got, tc.want) || !strings.Contains(got, "sealroot pki renew") {
				t.Errorf("log lacks %q and the fix:\n%s", tc.want, got)
			}
		})
	}
}
