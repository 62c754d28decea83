package ektemplate

import (
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestKinds(t *testing.T) {
	want := []struct {
		name     string
		index    uint32
		password bool
	}{
		{"rsa2048", 0x01C00002, false},
		{"p256", 0x01C0000A, false},
		{"p384", 0x01C00016, true},
		{"rsa3072", 0x01C0001C, true},
	}
	kinds := Kinds()
	if len(kinds) != len(want) {
		t.Fatalf("Kinds() = %d kinds, want %d", len(kinds), len(want))
	}
	for i, k := range kinds {
		if k.Name != want[i].name || k.CertIndex != want[i].index || k.UsesPassword() != want[i].password {
			t.Errorf("Kinds()[%d] = %s %#x password %v, want %+v", i, k.Name, k.CertIndex, k.UsesPassword(), want[i])
		}
		if got, ok := Of(&k.Template); !ok || got.Name != k.Name {
			t.Errorf("Of(%s template) = %q, %v", k.Name, got.Name, ok)
		}
	}
	ak := tpm2.ECCSRKTemplate
	if k, ok := Of(&ak); ok {
		t.Errorf("Of(SRK template) = %q, want no kind", k.Name)
	}
}
