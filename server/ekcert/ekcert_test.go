package ekcert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA signs EK certificates like a vendor's on-die or online CA.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test vendor EK CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// vendorServer speaks both vendors' URL schemes and answer formats: Intel
// under /intel/<id> with a JSON answer, AMD under /amd/<id> with DER. It
// serves certs, keyed by id, and counts requests.
type vendorServer struct {
	*httptest.Server
	mu    sync.Mutex
	certs map[string][]byte // "/intel/<escaped id>" or "/amd/<id>" -> DER
	hits  int
}

func newVendorServer(t *testing.T) *vendorServer {
	v := &vendorServer{certs: make(map[string][]byte)}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.hits++
		der, ok := v.certs[r.URL.EscapedPath()]
		switch {
		case !ok:
			http.NotFound(w, r)
		case strings.HasPrefix(r.URL.Path, "/intel/"):
			json.NewEncoder(w).Encode(map[string]string{
				"pubhash":     strings.TrimPrefix(r.URL.Path, "/intel/"),
				"certificate": base64.URLEncoding.EncodeToString(der),
			})
		default:
			w.Write(der)
		}
	}))
	t.Cleanup(v.Close)
	return v
}

func (v *vendorServer) put(path string, der []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.certs[path] = der
}

func (v *vendorServer) requests() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hits
}

func newSource(t *testing.T, v *vendorServer) *Source {
	t.Helper()
	cfg := Config{Dir: t.TempDir()}
	if v != nil {
		cfg.IntelURL, cfg.AMDURL, cfg.Client = v.URL+"/intel/", v.URL+"/amd/", v.Client()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLookupFetchesAndCaches(t *testing.T) {
	ca := newTestCA(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	eccKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	intelID, _ := IntelID(rsaKey.Public())
	amdIDs, _ := AMDIDs(eccKey.Public())
	tests := []struct {
		name     string
		key      crypto.PublicKey
		path     string
		wantFrom string
	}{
		{"intel_rsa_json", rsaKey.Public(), "/intel/" + intelID, "intel"},
		{"amd_ecc_lower_case", eccKey.Public(), "/amd/" + amdIDs[1], "amd"},
		{"amd_ecc_full_hash", eccKey.Public(), "/amd/" + amdIDs[2], "amd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVendorServer(t)
			der := ca.issue(t, tt.key)
			v.put(tt.path, der)
			s := newSource(t, v)
			got, from, err := s.Lookup(context.Background(), tt.key)
			if err != nil || from != tt.wantFrom || string(got) != string(der) {
				t.Fatalf("Lookup = %d bytes from %q, %v; want the certificate from %q", len(got), from, err, tt.wantFrom)
			}
			before := v.requests()
			got, from, err = s.Lookup(context.Background(), tt.key)
			if err != nil || from != "cache" || string(got) != string(der) || v.requests() != before {
				t.Errorf("second Lookup = from %q, %v, %d new requests; want the cached certificate and no request", from, err, v.requests()-before)
			}
		})
	}
}

// TestLookupRefusesCertForAnotherKey: a service answering a certificate
// for another key is an error and nothing is cached.
func TestLookupRefusesCertForAnotherKey(t *testing.T) {
	ca := newTestCA(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := newVendorServer(t)
	id, _ := IntelID(ek.Public())
	v.put("/intel/"+id, ca.issue(t, other.Public()))
	s := newSource(t, v)
	_, _, err := s.Lookup(context.Background(), ek.Public())
	if err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Lookup = %v, want a certificate-for-another-key error", err)
	}
	if entries, _ := os.ReadDir(s.cfg.Dir); len(entries) != 0 {
		t.Errorf("cache holds %d files after a wrong answer, want none", len(entries))
	}
}

// TestLookupNotFound: no service has it (404s), the miss is remembered, and
// without configured services nothing is fetched at all.
func TestLookupNotFound(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := newVendorServer(t)
	s := newSource(t, v)
	if _, _, err := s.Lookup(context.Background(), ek.Public()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup = %v, want ErrNotFound", err)
	}
	n := v.requests()
	if n != 5 { // Intel, then AMD's four ECC variants
		t.Errorf("first Lookup made %d requests, want 5", n)
	}
	if _, _, err := s.Lookup(context.Background(), ek.Public()); !errors.Is(err, ErrNotFound) || v.requests() != n {
		t.Errorf("second Lookup = %v after %d more requests, want ErrNotFound from the remembered miss", err, v.requests()-n)
	}
	offline := newSource(t, nil)
	if _, _, err := offline.Lookup(context.Background(), ek.Public()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup without services = %v, want ErrNotFound", err)
	}
}

// TestPutFillsCache is the air-gapped path: an imported certificate is
// found without any service.
func TestPutFillsCache(t *testing.T) {
	ca := newTestCA(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := x509.ParseCertificate(ca.issue(t, ek.Public()))
	if err != nil {
		t.Fatal(err)
	}
	s := newSource(t, nil)
	if err := s.Put(cert); err != nil {
		t.Fatalf("Put = %v", err)
	}
	got, from, err := s.Lookup(context.Background(), ek.Public())
	if err != nil || from != "cache" || string(got) != string(cert.Raw) {
		t.Errorf("Lookup after Put = from %q, %v; want the certificate from the cache", from, err)
	}
}

func TestParseAnswer(t *testing.T) {
	ca := newTestCA(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := ca.issue(t, ek.Public())
	unpadded, _ := json.Marshal(map[string]string{"certificate": base64.RawURLEncoding.EncodeToString(der)})
	for name, body := range map[string][]byte{
		"der":           der,
		"json_unpadded": unpadded,
	} {
		if c, err := ParseAnswer(body); err != nil || string(c.Raw) != string(der) {
			t.Errorf("ParseAnswer(%s) = %v", name, err)
		}
	}
	for name, body := range map[string][]byte{
		"html":          []byte("<html>not found</html>"),
		"json_bad_b64":  []byte(`{"certificate":"!!"}`),
		"json_no_field": []byte(`{}`),
	} {
		if _, err := ParseAnswer(body); err == nil {
			t.Errorf("ParseAnswer(%s) succeeded", name)
		}
	}
}

func TestNewRefusesBadServiceURL(t *testing.T) {
	for _, u := range []string{"ftp://x/", "https://host/no-slash", "://", "/relative/"} {
		if _, err := New(Config{Dir: t.TempDir(), IntelURL: u}); err == nil {
			t.Errorf("New(IntelURL %q) succeeded, want an error", u)
		}
	}
}
