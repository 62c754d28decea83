package wire

import (
	"bytes"
	"errors"
	"path"
	"strings"
	"testing"
)

func TestCheckFilePath(t *testing.T) {
	tests := []struct {
		name, path, want string // want "" = accepted
	}{
		{"plain", "/etc/motd", ""},
		{"deep", "/etc/systemd/system/app.service.d/override.conf", ""},
		{"empty", "", "empty path"},
		{"relative", "etc/motd", "not absolute"},
		{"root", "/", "root directory"},
		{"dotdot", "/etc/../../x", "not clean"},
		{"dotdot_only", "/..", "not clean"},
		{"dot", "/etc/./motd", "not clean"},
		{"double_slash", "/etc//motd", "not clean"},
		{"trailing_slash", "/etc/", "not clean"},
		{"nul", "/etc/mo\x00td", "NUL"},
		{"run", "/run/sealroot/x", "under /run"},
		{"proc", "/proc", "under /proc"},
		{"runx_is_fine", "/runx", ""},
		{"long", "/" + strings.Repeat("a", MaxPathLen), "at most"},
		{"long_component", "/" + strings.Repeat("a", 256), "over 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFilePath(tt.path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckFilePath(%q) = %v, want nil", tt.path, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckFilePath(%q) = %v, want ErrBadFile mentioning %q", tt.path, err, tt.want)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxFileSize)
	many := make([]File, 0, 17)
	for i := range 17 {
		many = append(many, File{Path: "/f/" + strings.Repeat("a", i+1), Content: big})
	}
	tests := []struct {
		name  string
		files []File
		want  string
	}{
		{"ok", []File{{Path: "/etc/a", Mode: 0o644}, {Path: "/etc/b", Mode: 0o4755}}, ""},
		{"mode", []File{{Path: "/etc/a", Mode: 0o10644}}, "mode"},
		{"owner_minus_one", []File{{Path: "/etc/a", UID: ^uint32(0)}}, "owner -1"},
		{"too_big", []File{{Path: "/etc/a", Content: append(big, 'x')}}, "at most 65536"},
		{"twice", []File{{Path: "/etc/a"}, {Path: "/etc/a"}}, "twice"},
		{"under_file", []File{{Path: "/etc/a"}, {Path: "/etc/a/b"}}, "lies under"},
		{"total", many, "in all"},
		{"count", make([]File, MaxFiles+1), "at most 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFiles(tt.files)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckFiles = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckFiles = %v, want ErrBadFile mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzCheckFilePath: an accepted path stays inside any root it is joined
// to and is its own clean form.
func FuzzCheckFilePath(f *testing.F) {
	for _, s := range []string{"/etc/motd", "/../x", "/a/./b", "a", "/", "/run/x", "//x", "/a/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckFilePath(p) != nil {
			return
		}
		j := path.Join("/newroot", p)
		if !strings.HasPrefix(j, "/newroot/") || j == "/newroot/" {
			t.Fatalf("accepted %q escapes: %q", p, j)
		}
		if path.Clean(p) != p || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			t.Fatalf("accepted unclean %q", p)
		}
	})
}
