// Package configdoc renders the reference page of sealroot's JSON
// configuration (docs/configuration.md) from the configuration types
// themselves: the JSON names and types by reflection, the text from each
// field's Go doc comment. A field's comment must say what the field does
// and end with two lines
//
//	// Default: 8080.
//	// Example: 8080.
//
// ("Default: none (required)." for a required field; the example is the
// JSON value as written in the file). Sections (struct fields) need only
// the description. Render reports every field that lacks any of these, so
// a test can fail on an undocumented field or a stale page.
package configdoc

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// Field is one documented configuration field.
type Field struct {
	Path    string // JSON path, e.g. "boot.http_port"
	Type    string // JSON type as operators read it
	Text    string // description
	Default string
	Example string
	Section bool // an object holding other fields
}

// Fields walks the configuration type root (a struct) and documents each
// field from the comments in the Go files of srcDir, which declares the
// types. It returns every field, and every missing piece of documentation
// joined as one error.
func Fields(root reflect.Type, srcDir string) ([]Field, error) {
	docs, err := parseComments(srcDir)
	if err != nil {
		return nil, err
	}
	w := &walker{docs: docs}
	w.walk(root, "")
	return w.fields, joinErrs(w.errs)
}

type walker struct {
	docs   map[string]map[string]string // type name -> Go field name -> comment
	fields []Field
	errs   []string
}

func (w *walker) walk(t reflect.Type, prefix string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := jsonName(sf)
		if !ok {
			continue
		}
		path := prefix + name
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		f := Field{Path: path, Type: jsonType(ft), Section: ft.Kind() == reflect.Struct}
		comment, found := w.docs[t.Name()][sf.Name]
		if !found {
			w.errs = append(w.errs, fmt.Sprintf("%s (%s.%s): no doc comment", path, t.Name(), sf.Name))
		}
		f.Text, f.Default, f.Example = splitComment(comment)
		for _, sep := range []string{" ", ": "} {
			if rest, ok := strings.CutPrefix(f.Text, sf.Name+sep); ok {
				f.Text = "`" + name + "`" + sep + rest // the operator's name, not Go's
				break
			}
		}
		switch {
		case found && f.Text == "":
			w.errs = append(w.errs, fmt.Sprintf("%s (%s.%s): comment has no description", path, t.Name(), sf.Name))
		case found && !f.Section && (f.Default == "" || f.Example == ""):
			w.errs = append(w.errs, fmt.Sprintf("%s (%s.%s): comment needs a \"Default:\" and an \"Example:\" line", path, t.Name(), sf.Name))
		}
		w.fields = append(w.fields, f)
		if f.Section {
			w.walk(ft, path+".")
		}
	}
}

// jsonName is the field's JSON key; ok is false for fields not in JSON.
func jsonName(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() {
		return "", false
	}
	tag := sf.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = sf.Name
	}
	return name, true
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("integer (0 to %d)", uint64(1)<<(t.Bits())-1)
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "list of " + jsonType(t.Elem())
	case reflect.Map:
		return "object of " + jsonType(t.Elem())
	case reflect.Struct:
		return "object"
	}
	return t.Kind().String()
}

// splitComment separates a doc comment into its description and its
// "Default:" and "Example:" lines (a final period is dropped).
func splitComment(c string) (text, def, example string) {
	var lines []string
	for _, l := range strings.Split(c, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "Default:"):
			def = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(l, "Default:")), ".")
		case strings.HasPrefix(l, "Example:"):
			example = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(l, "Example:")), ".")
		default:
			lines = append(lines, l)
		}
	}
	return strings.TrimSpace(strings.Join(lines, "\n")), def, example
}

// parseComments reads the struct field comments of every non-test Go file
// in dir: doc comment and line comment together.
func parseComments(dir string) (map[string]map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	docs := map[string]map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("configdoc: %w", err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			m := map[string]string{}
			for _, fl := range st.Fields.List {
				text := fl.Doc.Text() + fl.Comment.Text()
				for _, id := range fl.Names {
					if len(fl.Names) > 1 {
						text = "" // one comment for several fields documents none of them
					}
					m[id.Name] = text
				}
			}
			docs[ts.Name.Name] = m
			return true
		})
	}
	return docs, nil
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("configdoc: undocumented configuration fields:\n  %s", strings.Join(errs, "\n  "))
}

// Markdown renders the reference page: intro (Markdown, as is), then one
// entry per field in the order of the types.
func Markdown(intro string, fields []Field) []byte {
	var b bytes.Buffer
	b.WriteString(strings.TrimSpace(intro) + "\n\n")
	b.WriteString("| Field | Type | Default |\n|---|---|---|\n")
	for _, f := range fields {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s |\n", f.Path, anchor(f.Path), f.Type, cell(formatDefault(f.Default)))
	}
	for _, f := range fields {
		fmt.Fprintf(&b, "\n## `%s`\n\n", f.Path)
		fmt.Fprintf(&b, "%s\n\n", f.Text)
		fmt.Fprintf(&b, "- Type: %s\n", f.Type)
		if !f.Section {
			fmt.Fprintf(&b, "- Default: %s\n", formatDefault(f.Default))
			fmt.Fprintf(&b, "- Example: `%q: %s`\n", lastName(f.Path), f.Example)
		}
	}
	return b.Bytes()
}

// formatDefault sets the JSON value of a default in code, the remark
// after it ("" (no DHCP)) as text.
func formatDefault(s string) string {
	value, remark, _ := strings.Cut(s, " (")
	if remark != "" {
		remark = " (" + remark
	}
	if value == "none" || value == "" {
		return s
	}
	return "`" + value + "`" + remark
}

// anchor is the GitHub heading anchor of "## `a.b_c`".
func anchor(path string) string { return strings.ReplaceAll(path, ".", "") }

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

func lastName(path string) string {
	return path[strings.LastIndex(path, ".")+1:]
}
