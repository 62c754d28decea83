package config_test

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/configdoc"
)

// TestConfigReference fails when a configuration field lacks its doc
// comment, default or example, or when docs/configuration.md is not what
// "go generate ./server/config" writes.
func TestConfigReference(t *testing.T) {
	page, err := configdoc.Page(reflect.TypeFor[config.Config](), ".")
	if err != nil {
		t.Fatalf("%v\n(document each field: a comment, then \"Default: ...\" and \"Example: ...\" lines; see package configdoc)", err)
	}
	have, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, page) {
		t.Errorf("docs/configuration.md is stale: run \"go generate ./server/config\"")
	}
}
