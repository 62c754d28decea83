package ekcert

import "testing"

// FuzzParseAnswer: a vendor service's answer never panics the decoder.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{`{"certificate":"MAA"}`, `{"certificate":"MAA="}`, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "\x30\x03\x02\x01\x01", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if c, err := ParseAnswer(body); err == nil && c == nil {
			t.Fatal("ParseAnswer returned neither a certificate nor an error")
		}
	})
}
