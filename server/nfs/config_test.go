package nfs

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", os.Getenv("UPDATE_TESTDATA") == "1", "rewrite testdata golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_TESTDATA=1)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{ExportsFile: "/var/lib/sealroot/nfs/exports.conf", RecoveryRoot: "/var/lib/sealroot/nfs/recovery"}},
		{"bound_test", Config{
			ExportsFile: "/run/s/exports.conf", RecoveryRoot: "/run/s/recovery",
			BindAddr: netip.MustParseAddr("10.99.0.1"), Port: 12049, MinorVersions: []uint8{2, 0, 1, 1},
			DbusNamePrefix: "sealroot_t1", LogLevel: "INFO",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.cfg)
			if err != nil {
				t.Fatalf("Render = %v", err)
			}
			golden(t, "ganesha_"+tc.name+".conf", got)
		})
	}
}

func TestRenderExportsGolden(t *testing.T) {
	got, err := RenderExports([]Export{
		{ID: 1, Path: "/var/lib/sealroot/nfs/machines/a1b2/root", Name: "a1b2c3d4", Client: netip.MustParseAddr("10.77.0.2")},
		{ID: 2, Path: "/var/lib/sealroot/nfs/machines/ffee/root", Name: "kiosk-7", Client: netip.MustParseAddr("fd00::7")},
		{ID: 3, Path: "/var/lib/sealroot/nfs/machines/0042/root", Name: "thin-3", Client: netip.MustParseAddr("10.77.0.3"), ReadOnly: true},
	})
	if err != nil {
		t.Fatalf("RenderExports = %v", err)
	}
	golden(t, "exports.conf", got)
	if empty, err := RenderExports(nil); err != nil || bytes.Contains(empty, []byte("EXPORT")) {
		t.Fatalf("RenderExports(nil) = %q, %v; want no block", empty, err)
	}
}

func TestRenderRejects(t *testing.T) {
	ok := Config{ExportsFile: "/e.conf", RecoveryRoot: "/r"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"relative_exports_file", func(c *Config) { c.ExportsFile = "e.conf" }},
		{"quote_in_path", func(c *Config) { c.ExportsFile = `/e.conf"; %include "/etc/x` }},
		{"newline_in_path", func(c *Config) { c.RecoveryRoot = "/r\n}" }},
		{"unclean_path", func(c *Config) { c.RecoveryRoot = "/r/../etc" }},
		{"brace_in_prefix", func(c *Config) { c.DbusNamePrefix = "a}" }},
		{"unknown_log_level", func(c *Config) { c.LogLevel = "EVENT; x = y" }},
		{"minor_version_3", func(c *Config) { c.MinorVersions = []uint8{3} }},
		{"zoned_bind", func(c *Config) { c.BindAddr = netip.MustParseAddr("fe80::1%eth0") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if got, err := Render(c); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("Render = %q, %v; want ErrBadConfig", got, err)
			}
		})
	}
}

func TestRenderExportsRejects(t *testing.T) {
	a := Export{ID: 1, Path: "/m/a", Name: "a", Client: netip.MustParseAddr("10.0.0.2")}
	for _, tc := range []struct {
		name    string
		exports []Export
	}{
		{"id_zero", []Export{{Path: "/m/a", Name: "a", Client: a.Client}}},
		{"relative_path", []Export{{ID: 1, Path: "m/a", Name: "a", Client: a.Client}}},
		{"brace_in_path", []Export{{ID: 1, Path: "/m/a}", Name: "a", Client: a.Client}}},
		{"slash_in_name", []Export{{ID: 1, Path: "/m/a", Name: "a/b", Client: a.Client}}},
		{"quote_in_name", []Export{{ID: 1, Path: "/m/a", Name: `a";`, Client: a.Client}}},
		{"no_client", []Export{{ID: 1, Path: "/m/a", Name: "a"}}},
		{"unspecified_client", []Export{{ID: 1, Path: "/m/a", Name: "a", Client: netip.IPv4Unspecified()}}},
		{"duplicate_id", []Export{a, {ID: 1, Path: "/m/b", Name: "b", Client: a.Client}}},
		{"duplicate_name", []Export{a, {ID: 2, Path: "/m/b", Name: "a", Client: a.Client}}},
		{"duplicate_path", []Export{a, {ID: 2, Path: "/m/a", Name: "b", Client: a.Client}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := RenderExports(tc.exports); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("RenderExports = %q, %v; want ErrBadConfig", got, err)
			}
		})
	}
}

// shape reduces a ganesha configuration to its structure: block names,
// braces, keys and %include lines, in order, with values dropped. It
// follows ganesha's lexer closely enough to see an injected block: quoted
// strings, '#' comments, '{', '}', ';' and '='.
func shape(conf []byte) []string {
	var out []string
	s := string(conf)
	var word strings.Builder
	flush := func() {
		if word.Len() > 0 {
			out = append(out, word.String())
			word.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '#':
			flush()
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return append(out, "UNTERMINATED")
			}
			flush()
			out = append(out, "STR")
			i += j + 1
		case c == '{' || c == '}' || c == ';' || c == '=':
			flush()
			out = append(out, string(c))
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush()
		default:
			word.WriteByte(c)
		}
	}
	flush()
	// Values between '=' and ';' are dropped.
	var keep []string
	for i := 0; i < len(out); i++ {
		keep = append(keep, out[i])
		if out[i] == "=" {
			for i+1 < len(out) && out[i+1] != ";" {
				i++
			}
		}
	}
	return keep
}

// FuzzRender checks that no value yields another block, key or include:
// any accepted input renders to the same shape as a plain one.
func FuzzRender(f *testing.F) {
	f.Add("/e.conf", "/r", "a1b2", "/m/a", "sealroot", "EVENT", "10.0.0.2")
	f.Add(`/e.conf"; %include "/x`, "/r\n}", "a}{", "/m/a;EXPORT{", "p", "INFO", "::1")
	f.Fuzz(func(t *testing.T, exportsFile, recovery, name, path, prefix, level, client string) {
		addr, _ := netip.ParseAddr(client)
		c := Config{ExportsFile: exportsFile, RecoveryRoot: recovery, DbusNamePrefix: prefix, LogLevel: level, BindAddr: addr}
		if conf, err := Render(c); err == nil {
			plain, _ := Render(Config{ExportsFile: "/e", RecoveryRoot: "/r", BindAddr: netip.MustParseAddr("10.0.0.1")})
			if !addr.IsValid() {
				plain, _ = Render(Config{ExportsFile: "/e", RecoveryRoot: "/r"})
			}
			if got, want := shape(conf), shape(plain); !slices.Equal(got, want) {
				t.Fatalf("Render(%+v) shape = %q; want %q\n%s", c, got, want, conf)
			}
		}
		e := Export{ID: 7, Path: path, Name: name, Client: addr}
		if conf, err := RenderExports([]Export{e}); err == nil {
			plain, _ := RenderExports([]Export{{ID: 1, Path: "/m", Name: "m", Client: netip.MustParseAddr("10.0.0.2")}})
			if got, want := shape(conf), shape(plain); !slices.Equal(got, want) {
				t.Fatalf("RenderExports(%+v) shape = %q; want %q\n%s", e, got, want, conf)
			}
		}
	})
}
