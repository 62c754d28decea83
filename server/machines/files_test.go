package machines

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func TestFilesReleaseMergesAndRenders(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.add(t, idA, "alpha", store.StateApproved, false)
	e.add(t, idC, "gamma", store.StateApproved, false)
	if err := e.st.PutGroup(ctx, &store.Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{idA, idC} {
		if _, err := e.st.UpdateMachine(ctx, id, func(m *store.Machine) error {
			m.Group = "lab"
			m.Hints.MACs = []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	lab, alpha := api.FileOwner{Group: "lab"}, api.FileOwner{Machine: "alpha"}
	set := func(o api.FileOwner, f api.File) {
		t.Helper()
		if err := e.mgr.SetFile(ctx, o, f); err != nil {
			t.Fatalf("SetFile(%s, %s): %v", o, f.Path, err)
		}
	}
	set(lab, api.File{Path: "/etc/motd", Mode: 0o644, Content: []byte("lab machine\n")})
	set(lab, api.File{Path: "/etc/app/id", Mode: 0o640, UID: 0, GID: 10, Template: true,
		Content: []byte("name={{.Name}} group={{.Group}} addr={{.Address}} wg={{.TunnelAddress}}{{range .MACs}} mac={{.}}{{end}}\n")})
	set(lab, api.File{Path: "/etc/issue", Mode: 0o644, Content: []byte("welcome\n")})
	set(alpha, api.File{Path: "/etc/motd", Mode: 0o600, Content: []byte("alpha's own\n")})
	set(alpha, api.File{Path: "/etc/app", Mode: 0o600, Content: []byte("a file where the group has a directory")})

	list, err := e.mgr.Files(ctx, lab)
	if err != nil || len(list) != 3 || list[0].Path != "/etc/app/id" || list[0].Content != nil || list[2].Size != len("lab machine\n") {
		t.Fatalf("Files(lab) = %+v, %v", list, err)
	}

	ma, _ := e.st.Machine(ctx, idA)
	got, err := e.mgr.ReleaseFiles(WithActor(ctx, "agent"), ma, "192.0.2.7:4433", &wire.TunnelPlan{Address: "10.77.0.9/32"})
	if err != nil {
		t.Fatalf("ReleaseFiles(alpha): %v", err)
	}
	checkReleased(t, got, map[string]string{
		"/etc/app":   "a file where the group has a directory", // the group's /etc/app/id yields
		"/etc/issue": "welcome\n",
		"/etc/motd":  "alpha's own\n", // over the group's
	})

	mc, _ := e.st.Machine(ctx, idC)
	got, err = e.mgr.ReleaseFiles(WithActor(ctx, "agent"), mc, "192.0.2.8:4433", nil)
	if err != nil {
		t.Fatalf("ReleaseFiles(gamma): %v", err)
	}
	checkReleased(t, got, map[string]string{
		"/etc/app/id": "name=gamma group=lab addr=192.0.2.8 wg= mac=52:54:00:00:00:01 mac=52:54:00:00:00:02\n",
		"/etc/issue":  "welcome\n",
		"/etc/motd":   "lab machine\n",
	})
	if err := e.mgr.DeleteFile(ctx, lab, "/etc/issue"); err != nil {
		t.Fatal(err)
	}
	got, _ = e.mgr.ReleaseFiles(ctx, ma, "192.0.2.7:4433", &wire.TunnelPlan{Address: "10.77.0.9/32"})
	if len(got) != 2 {
		t.Errorf("after deleting the group's /etc/issue alpha gets %d files, want 2", len(got))
	}
	set(alpha, api.File{Path: "/etc/wg", Template: true, Content: []byte("{{.TunnelAddress}}")})
	got, _ = e.mgr.ReleaseFiles(ctx, ma, "192.0.2.7:4433", &wire.TunnelPlan{Address: "10.77.0.9/32"})
	if len(got) != 3 || got[2].Path != "/etc/wg" || string(got[2].Content) != "10.77.0.9" {
		t.Errorf("alpha's /etc/wg = %+v, want 10.77.0.9", got)
	}
	for _, f := range got {
		if f.Path == "/etc/app/id" && (f.Mode != 0o640 || f.GID != 10) {
			t.Errorf("released %s mode %#o gid %d, want 0640 gid 10", f.Path, f.Mode, f.GID)
		}
	}

	var actions []string
	for _, a := range e.entries(t) {
		actions = append(actions, a.Action+"/"+a.Outcome)
	}
	for _, want := range []string{"file-set/ok", "file-delete/ok", "files-load/ok"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}
}

func checkReleased(t *testing.T, got []wire.File, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("released %d files %+v, want %d", len(got), got, len(want))
	}
	for _, f := range got {
		if w, ok := want[f.Path]; !ok || string(f.Content) != w {
			t.Errorf("released %s = %q, want %q", f.Path, f.Content, w)
		}
	}
}

func TestSetFileRefuses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.add(t, idA, "alpha", store.StateApproved, false)
	alpha := api.FileOwner{Machine: "alpha"}
	tests := []struct {
		name  string
		owner api.FileOwner
		f     api.File
		want  error
		msg   string
	}{
		{"dotdot", alpha, api.File{Path: "/etc/../../x"}, api.ErrInvalid, "not clean"},
		{"relative", alpha, api.File{Path: "etc/x"}, api.ErrInvalid, "not absolute"},
		{"under_run", alpha, api.File{Path: "/run/x"}, api.ErrInvalid, "under /run"},
		{"huge", alpha, api.File{Path: "/x", Content: make([]byte, wire.MaxFileSize+1)}, api.ErrInvalid, "at most"},
		{"mode", alpha, api.File{Path: "/x", Mode: 0o100644}, api.ErrInvalid, "mode"},
		{"template_syntax", alpha, api.File{Path: "/x", Template: true, Content: []byte("{{.Name")}, api.ErrInvalid, "template /x"},
		{"template_unknown_field", alpha, api.File{Path: "/x", Template: true, Content: []byte("{{.Password}}")}, api.ErrInvalid, "sample data"},
		{"template_printf", alpha, api.File{Path: "/x", Template: true, Content: []byte(`{{printf "%0999999999d" 1}}`)}, api.ErrInvalid, `"printf" is not allowed`},
		{"template_range_int", alpha, api.File{Path: "/x", Template: true, Content: []byte(`{{range 1000000000}}x{{end}}`)}, api.ErrInvalid, "range only over a field"},
		{"template_nested_range", alpha, api.File{Path: "/x", Template: true, Content: []byte(`{{range .MACs}}{{range $.MACs}}{{end}}{{end}}`)}, api.ErrInvalid, "nested range"},
		{"template_define", alpha, api.File{Path: "/x", Template: true, Content: []byte(`{{define "a"}}{{template "a"}}{{end}}`)}, api.ErrInvalid, "not allowed"},
		{"template_output", alpha, api.File{Path: "/x", Template: true, Content: []byte(`{{range .MACs}}` + strings.Repeat("x", 3000) + `{{.}}{{end}}`)}, api.ErrInvalid, "output over"},
		{"unknown_machine", api.FileOwner{Machine: "nosuch"}, api.File{Path: "/x"}, api.ErrNotFound, ""},
		{"unknown_group", api.FileOwner{Group: "nosuch"}, api.File{Path: "/x"}, api.ErrNotFound, ""},
		{"both_owners", api.FileOwner{Group: "g", Machine: "alpha"}, api.File{Path: "/x"}, api.ErrInvalid, "machine or a group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.mgr.SetFile(ctx, tt.owner, tt.f)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("SetFile = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
	if list, err := e.mgr.Files(ctx, alpha); err != nil || len(list) != 0 {
		t.Errorf("after refusals Files = %v, %v; want none", list, err)
	}
	refused := 0
	for _, a := range e.entries(t) {
		if a.Action == "file-set" && a.Outcome == "refused" {
			refused++
		}
	}
	if refused != len(tests) {
		t.Errorf("audit has %d refused file-set entries, want %d", refused, len(tests))
	}
}

// FuzzFileTemplate: any template the checks accept renders on the sample
// data without panic and within wire.MaxFileSize.
func FuzzFileTemplate(f *testing.F) {
	for _, s := range []string{
		"{{.Name}}", "{{range .MACs}}{{.}}\n{{end}}", "{{if eq .Group \"lab\"}}x{{else}}y{{end}}",
		"{{with .MACs}}{{index . 0}}{{end}}", "{{range 5}}{{end}}", `{{printf "%d" 1}}`, "{{len .MACs}}",
		"{{range $i, $m := .MACs}}{{$i}}={{$m}}{{end}}", "{{slice .Name 1 3}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		if len(content) > wire.MaxFileSize {
			return
		}
		tm, err := parseFileTemplate(content)
		if err != nil {
			return
		}
		d := sampleFileData()
		out, err := renderFile(tm, &d)
		if err == nil && len(out) > wire.MaxFileSize {
			t.Fatalf("rendered %d bytes", len(out))
		}
	})
}

// TestFilesNoChangeWithoutAuditRecord: with an audit log that takes no
// records, files are neither set, deleted nor released.
func TestFilesNoChangeWithoutAuditRecord(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.add(t, idA, "alpha", store.StateApproved, false)
	alpha := api.FileOwner{Machine: "alpha"}
	if err := e.mgr.SetFile(ctx, alpha, api.File{Path: "/etc/kept", Content: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	mc, _ := e.st.Machine(ctx, idA)
	for name, call := range map[string]func() error{
		"set":    func() error { return e.mgr.SetFile(ctx, alpha, api.File{Path: "/etc/new", Content: []byte("y")}) },
		"delete": func() error { return e.mgr.DeleteFile(ctx, alpha, "/etc/kept") },
		"release": func() error {
			fs, err := e.mgr.ReleaseFiles(ctx, mc, "192.0.2.1:1", nil)
			if fs != nil {
				t.Errorf("ReleaseFiles handed out %d files", len(fs))
			}
			return err
		},
	} {
		if err := call(); !errors.Is(err, api.ErrUnavailable) || !errors.Is(err, audit.ErrNotWritten) {
			t.Errorf("%s: err = %v, want api.ErrUnavailable wrapping audit.ErrNotWritten", name, err)
		}
	}
	fs, err := e.st.Files(ctx, store.FileOwner{Machine: idA})
	if err != nil || len(fs) != 1 || fs[0].Path != "/etc/kept" {
		t.Errorf("files after refused changes = %+v, %v; want only /etc/kept", fs, err)
	}
	if after, _ := e.st.Machine(ctx, idA); after.Version != mc.Version {
		t.Errorf("version %d -> %d without an audit record", mc.Version, after.Version)
	}
}
