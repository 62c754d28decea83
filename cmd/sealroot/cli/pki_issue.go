package cli

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/pki"
)

func newPKIIssueCmd(e *env) *cobra.Command {
	var (
		stateDir, out, csr string
		dns                []string
		ips                []net.IP
	)
	c := &cobra.Command{
		Use:   "issue",
		Short: "Issue a server certificate for another server from this CA",
		Long: `Issue a server certificate, valid two years, for an additional sealroot
server from the CA in <state-dir>/pki (the CA every initramfs pins, so
agents accept the new server without a rebuild). Each server has its own
certificate and key. --dns and --ip name the new server (at least one).

With --csr, the certificate is for the key of a request made on the new
server with "sealroot pki request" (the key never leaves it); --out gets
server.crt and ca.crt. Without --csr, a new key is made and --out gets
server.key too. Copy the files to the new server's <state-dir>/pki (never
the CA key). Existing files in --out are never replaced.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			opts := pki.IssueOptions{DNSNames: dns, IPs: ips}
			if csr != "" {
				req, err := pki.LoadRequest(csr)
				if err != nil {
					return err
				}
				opts.Request = req
			}
			cert, err := pki.Issue(pkiDir(stateDir), out, opts)
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(certSummary(cert))
			}
			_, err = fmt.Fprintf(e.Stdout, "server certificate: %s\nnames: %s\nvalid until: %s\ncopy %s to the new server's <state-dir>/pki\n",
				filepath.Join(out, pki.ServerCertFile), strings.Join(certNames(cert.DNSNames, cert.IPAddresses), ", "),
				cert.NotAfter.UTC().Format(time.RFC3339), out)
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&stateDir, "state-dir", DefaultStateDir, "sealroot state `dir` holding the CA")
	f.StringVar(&out, "out", "", "output `dir` for the new server's files (required)")
	f.StringVar(&csr, "csr", "", "certificate request `file` made on the new server by pki request")
	f.StringSliceVar(&dns, "dns", nil, "new server's DNS `name` (repeatable)")
	f.IPSliceVar(&ips, "ip", nil, "new server's IP `address` (repeatable)")
	_ = c.MarkFlagRequired("out")
	return c
}

func newPKIRequestCmd(e *env) *cobra.Command {
	var stateDir string
	c := &cobra.Command{
		Use:   "request",
		Short: "Make this server's key and a certificate request for pki issue",
		Long: `Make this server's key in <state-dir>/pki/server.key and a certificate
request beside it (server.csr). Give the request to the server holding
the CA: "sealroot pki issue --csr server.csr --dns NAME --out DIR", then
copy server.crt and ca.crt from DIR back into <state-dir>/pki. An
existing key is never replaced.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			path, err := pki.Request(pkiDir(stateDir))
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(struct {
					Request string `json:"request"`
				}{path})
			}
			_, err = fmt.Fprintf(e.Stdout, "certificate request: %s (give it to pki issue --csr)\n", path)
			return err
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	return c
}
