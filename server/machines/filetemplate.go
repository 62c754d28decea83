package machines

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/sealroot/sealroot/wire"
)

// FileData is what a file template sees: {{.Name}}, {{.Group}},
// {{.Address}}, {{range .MACs}}...
type FileData struct {
	Name          string   // the machine's name, its host name
	ID            string   // the machine's ID (hex SHA-256 of its EK)
	Group         string   // its group, "" for none
	Address       string   // the IP address it attested from
	TunnelAddress string   // its WireGuard address without prefix length, "" without a tunnel
	MACs          []string // its network interfaces' MAC addresses, as it reported them
}

// sampleFileData is what a template is tried on when it is set: the
// largest a machine's data usually gets (a 63-byte name, 32 MACs), so a
// template that fits here fits at release.
func sampleFileData() FileData {
	macs := make([]string, 32)
	for i := range macs {
		macs[i] = fmt.Sprintf("52:54:00:00:00:%02x", i)
	}
	return FileData{
		Name: strings.Repeat("n", 63), ID: strings.Repeat("0", 64), Group: strings.Repeat("g", 64),
		Address: "2001:db8::ffff:ffff:ffff:ffff", TunnelAddress: "10.77.255.254", MACs: macs,
	}
}

// templateFuncs are the builtin functions a file template may call: no
// printf (its width can ask for gigabytes) and no call.
var templateFuncs = map[string]bool{
	"and": true, "or": true, "not": true, "len": true, "index": true, "slice": true,
	"eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true,
	"print": true, "println": true, "urlquery": true, "js": true, "html": true,
}

// errTooLong stops a template whose output passes wire.MaxFileSize.
var errTooLong = fmt.Errorf("output over %d bytes", wire.MaxFileSize)

// parseFileTemplate parses content as a file template and refuses what
// could run long or large: define, template and block, range over
// anything but a field, nested range, and functions outside
// templateFuncs. Execution is then bounded by the template's size and
// the data's lists.
func parseFileTemplate(content []byte) (*template.Template, error) {
	t, err := template.New("file").Option("missingkey=error").Parse(string(content))
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define and block are not allowed")
	}
	if err := checkNode(t.Tree.Root, false); err != nil {
		return nil, err
	}
	return t, nil
}

func checkNode(n parse.Node, inRange bool) error {
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(c, inRange); err != nil {
				return err
			}
		}
	case *parse.TemplateNode:
		return fmt.Errorf("line %d: {{template}} is not allowed", n.Line)
	case *parse.ActionNode:
		return checkPipe(n.Pipe)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode, inRange)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode, inRange)
	case *parse.RangeNode:
		if inRange {
			return fmt.Errorf("line %d: nested range is not allowed", n.Line)
		}
		if len(n.Pipe.Cmds) != 1 || len(n.Pipe.Cmds[0].Args) != 1 {
			return fmt.Errorf("line %d: range only over a field such as .MACs", n.Line)
		}
		if _, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode); !ok {
			return fmt.Errorf("line %d: range only over a field such as .MACs", n.Line)
		}
		return checkBranch(&n.BranchNode, true)
	case *parse.PipeNode:
		return checkPipe(n)
	case *parse.IdentifierNode:
		if !templateFuncs[n.Ident] {
			return fmt.Errorf("function %q is not allowed", n.Ident)
		}
	}
	return nil
}

func checkBranch(b *parse.BranchNode, inRange bool) error {
	if err := checkPipe(b.Pipe); err != nil {
		return err
	}
	if err := checkNode(b.List, inRange); err != nil {
		return err
	}
	if b.ElseList != nil {
		return checkNode(b.ElseList, inRange)
	}
	return nil
}

func checkPipe(p *parse.PipeNode) error {
	if p == nil {
		return nil
	}
	for _, c := range p.Cmds {
		for _, a := range c.Args {
			if err := checkNode(a, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderFile executes t on d into at most wire.MaxFileSize bytes.
func renderFile(t *template.Template, d *FileData) ([]byte, error) {
	w := &limitedBuffer{max: wire.MaxFileSize}
	if err := t.Execute(w, d); err != nil {
		if errors.Is(err, errTooLong) {
			return nil, errTooLong
		}
		return nil, err
	}
	return w.Bytes(), nil
}

type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}
