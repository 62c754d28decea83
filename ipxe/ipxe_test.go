package ipxe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testBase = "http://192.0.2.1:8080/artifacts"

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{"bios_kernel_initrd", Params{BaseURL: testBase, Arch: ArchBIOS, Kernel: "vmlinuz", Initrd: "initramfs.cpio.zst", Cmdline: "console=ttyS0,115200n8 quiet"}},
		{"bios_kernel_only", Params{BaseURL: testBase + "/", Arch: ArchBIOS, Kernel: "vmlinuz"}},
		{"efi_uki", Params{BaseURL: testBase, Arch: ArchEFIx64, UKI: "sealroot-1.2.efi", Cmdline: "console=ttyS0 quiet"}},
		{"efi_kernel_initrd", Params{BaseURL: "https://boot.example:443", Arch: ArchEFIx64, Kernel: "vmlinuz.efi", Initrd: "initrd.img", Cmdline: "quiet", RetrySeconds: 17}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.p)
			if err != nil {
				t.Fatalf("Render(%+v) = %v", tt.p, err)
			}
			golden := filepath.Join("testdata", tt.name+".ipxe")
			if os.Getenv("UPDATE_TESTDATA") == "1" {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with UPDATE_TESTDATA=1): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render(%+v) =\n%s\nwant\n%s", tt.p, got, want)
			}
		})
	}
}

func TestRenderRejects(t *testing.T) {
	ok := Params{BaseURL: testBase, Arch: ArchEFIx64, UKI: "uki.efi", Cmdline: "quiet"}
	tests := []struct {
		name   string
		modify func(p *Params)
		want   error
	}{
		{"arch_unknown", func(p *Params) { p.Arch = "efi-arm64" }, ErrInvalidArch},
		{"arch_empty", func(p *Params) { p.Arch = "" }, ErrInvalidArch},
		{"base_ftp", func(p *Params) { p.BaseURL = "ftp://192.0.2.1/" }, ErrInvalidBaseURL},
		{"base_userinfo", func(p *Params) { p.BaseURL = "http://u:pw@192.0.2.1/" }, ErrInvalidBaseURL},
		{"base_query", func(p *Params) { p.BaseURL = "http://192.0.2.1/a?x=1" }, ErrInvalidBaseURL},
		{"base_newline", func(p *Params) { p.BaseURL = "http://192.0.2.1/\nshell" }, ErrInvalidBaseURL},
		{"base_setting", func(p *Params) { p.BaseURL = "http://${next-server}/" }, ErrInvalidBaseURL},
		{"base_no_host", func(p *Params) { p.BaseURL = "http:///x" }, ErrInvalidBaseURL},
		{"name_traversal", func(p *Params) { p.UKI = "../uki.efi" }, ErrInvalidName},
		{"name_slash", func(p *Params) { p.UKI = "a/b" }, ErrInvalidName},
		{"name_dot", func(p *Params) { p.UKI = "." }, ErrInvalidName},
		{"name_space", func(p *Params) { p.UKI = "uki.efi shell" }, ErrInvalidName},
		{"name_too_long", func(p *Params) { p.UKI = strings.Repeat("a", 129) }, ErrInvalidName},
		{"cmdline_newline", func(p *Params) { p.Cmdline = "quiet\nshell" }, ErrInvalidCmdline},
		{"cmdline_cr", func(p *Params) { p.Cmdline = "quiet\rshell" }, ErrInvalidCmdline},
		{"cmdline_nul", func(p *Params) { p.Cmdline = "quiet\x00" }, ErrInvalidCmdline},
		{"cmdline_dollar", func(p *Params) { p.Cmdline = "x=$y" }, ErrInvalidCmdline},
		{"cmdline_braces", func(p *Params) { p.Cmdline = "x={y}" }, ErrInvalidCmdline},
		{"cmdline_quote", func(p *Params) { p.Cmdline = `x="a b"` }, ErrInvalidCmdline},
		{"cmdline_backslash", func(p *Params) { p.Cmdline = `x=a\` }, ErrInvalidCmdline},
		{"cmdline_hash", func(p *Params) { p.Cmdline = "x=1 #c" }, ErrInvalidCmdline},
		{"cmdline_or", func(p *Params) { p.Cmdline = "quiet || shell" }, ErrInvalidCmdline},
		{"cmdline_and", func(p *Params) { p.Cmdline = "quiet && shell" }, ErrInvalidCmdline},
		{"cmdline_non_ascii", func(p *Params) { p.Cmdline = "x=é" }, ErrInvalidCmdline},
		{"cmdline_too_long", func(p *Params) { p.Cmdline = strings.Repeat("a", 2049) }, ErrInvalidCmdline},
		{"secret_password", func(p *Params) { p.Cmdline = "quiet password=hunter2" }, ErrSecretInCmdline},
		{"secret_root_password", func(p *Params) { p.Cmdline = "rootpassword=x" }, ErrSecretInCmdline},
		{"secret_token", func(p *Params) { p.Cmdline = "sealroot.join_token=abc" }, ErrSecretInCmdline},
		{"secret_secret", func(p *Params) { p.Cmdline = "SECRET=1" }, ErrSecretInCmdline},
		{"secret_key", func(p *Params) { p.Cmdline = "key=abc" }, ErrSecretInCmdline},
		{"secret_luks_key", func(p *Params) { p.Cmdline = "rd.luks.key=abc" }, ErrSecretInCmdline},
		{"secret_apikey", func(p *Params) { p.Cmdline = "apikey=abc" }, ErrSecretInCmdline},
		{"secret_chap", func(p *Params) { p.Cmdline = "iscsi_chap_user=u" }, ErrSecretInCmdline},
		{"secret_bare_flag", func(p *Params) { p.Cmdline = "token" }, ErrSecretInCmdline},
		{"uki_and_kernel", func(p *Params) { p.Kernel = "vmlinuz" }, ErrMissingArtifact},
		{"uki_on_bios", func(p *Params) { p.Arch = ArchBIOS }, ErrMissingArtifact},
		{"nothing_to_boot", func(p *Params) { p.UKI = "" }, ErrMissingArtifact},
		{"initrd_without_kernel", func(p *Params) { p.UKI = ""; p.Initrd = "initrd" }, ErrMissingArtifact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.modify(&p)
			got, err := Render(p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Render(%+v) = %q, %v; want error %v", p, got, err, tt.want)
			}
			if got != nil {
				t.Errorf("Render returned a script with an error")
			}
		})
	}
}

func TestSecretErrorHidesValue(t *testing.T) {
	_, err := Render(Params{BaseURL: testBase, Arch: ArchBIOS, Kernel: "k", Cmdline: "password=hunter2"})
	if !errors.Is(err, ErrSecretInCmdline) {
		t.Fatalf("err = %v, want ErrSecretInCmdline", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q leaks the secret value", err)
	}
}

func TestRenderAcceptsOrdinaryCmdlines(t *testing.T) {
	for _, c := range []string{
		"console=ttyS0,115200n8 quiet",
		"keymap=de keyboard=us",
		"sealroot.server=https://192.0.2.1:4433 sealroot.ca=sha256:ab12",
		"module_blacklist=nouveau,radeon systemd.unit=multi-user.target",
		"ip=dhcp rd.shell=0 a|b c&d",
	} {
		p := Params{BaseURL: testBase, Arch: ArchBIOS, Kernel: "vmlinuz", Cmdline: c}
		if _, err := Render(p); err != nil {
			t.Errorf("Render(cmdline %q) = %v, want nil", c, err)
		}
	}
}

// FuzzRender checks that Render never panics and that a script it accepts
// consists only of lines the template writes: attacker-chosen input can
// neither start a new line nor add a command.
func FuzzRender(f *testing.F) {
	f.Add(testBase, "bios", "vmlinuz", "initrd", "", "console=ttyS0 quiet", 0)
	f.Add(testBase, "efi-x64", "", "", "uki.efi", "quiet", 3)
	f.Add("http://x/\n", "efi-x64", "", "", "a\nb", "q\r\n#!ipxe", -1)
	f.Add("http://${x}", "bios", "k", "", "", "${net0/ip} || shell", 99999)
	f.Fuzz(func(t *testing.T, base, arch, kernel, initrd, uki, cmdline string, retry int) {
		p := Params{BaseURL: base, Arch: Arch(arch), Kernel: kernel, Initrd: initrd, UKI: uki, Cmdline: cmdline, RetrySeconds: retry}
		out, err := Render(p)
		if err != nil {
			return
		}
		checkScript(t, out)
	})
}

// checkScript asserts the structural invariants of a rendered script.
func checkScript(t *testing.T, out []byte) {
	t.Helper()
	if !bytes.HasPrefix(out, []byte("#!ipxe\n")) || !bytes.HasSuffix(out, []byte("goto retry\n")) {
		t.Fatalf("script not framed by #!ipxe ... goto retry:\n%s", out)
	}
	allowed := []string{"#!ipxe", "# sealroot boot script", ":retry", ":failed", "imgfree",
		"kernel ", "initrd ", "boot ", "echo sealroot: boot failed", "sleep ", "goto retry"}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\x00${}\\\"'#") && !strings.HasPrefix(l, "#") {
			t.Errorf("line %q contains a character iPXE would interpret", l)
		}
		if strings.Count(l, "||") > 1 || strings.Contains(l, "&&") {
			t.Errorf("line %q has extra control operators", l)
		}
		if !hasAnyPrefix(l, allowed) {
			t.Errorf("unexpected line %q", l)
		}
	}
	if n := strings.Count(string(out), "\nboot "); n != 1 {
		t.Errorf("script has %d boot commands, want 1", n)
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
