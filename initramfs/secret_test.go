package initramfs

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckAgentConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want error
	}{
		{"servers_and_ca", testAgentConfig, nil},
		{"public_key_fields", `{"server_public_key":"", "ek_policy":{"pcrs":[0,7]}}`, nil},
		{"nested_public_fields", `{"tunnel":{"endpoint":"192.0.2.1:51820","peer_pubkey":"abc="}}`, nil},
		{"pkcs8_private_key", `{"ca_pem":"-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----"}`, ErrSecretInConfig},
		{"rsa_private_key_in_value", `{"note":"-----BEGIN RSA PRIVATE KEY-----"}`, ErrSecretInConfig},
		{"encrypted_private_key", `{"k":"-----BEGIN ENCRYPTED PRIVATE KEY-----"}`, ErrSecretInConfig},
		{"password", `{"Password":"hunter2"}`, ErrSecretInConfig},
		{"secret_in_array", `{"peers":[{"name":"a"},{"shared-secret":"x"}]}`, ErrSecretInConfig},
		{"token", `{"enroll":{"bootstrapToken":"x"}}`, ErrSecretInConfig},
		{"wireguard_private_key", `{"wg_private_key":"x"}`, ErrSecretInConfig},
		{"psk", `{"preshared_psk":"x"}`, ErrSecretInConfig},
		{"api_key", `{"api-key":"x"}`, ErrSecretInConfig},
		{"not_an_object", `["a"]`, ErrBadAgentConfig},
		{"trailing_data", `{} {}`, ErrBadAgentConfig},
		{"empty", ``, ErrBadAgentConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckAgentConfig([]byte(tt.cfg))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("CheckAgentConfig(%s) = %v, want %v", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestCheckAgentConfigDoesNotLeakValue(t *testing.T) {
	err := CheckAgentConfig([]byte(`{"password":"hunter2"}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("CheckAgentConfig error %q must name the field, not the value", err)
	}
}
