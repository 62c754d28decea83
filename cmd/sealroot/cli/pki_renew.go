package cli

import (
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/pki"
)

func newPKIRenewCmd(e *env) *cobra.Command {
	var (
		stateDir string
		dns      []string
		ips      []net.IP
	)
	c := &cobra.Command{
		Use:   "renew",
		Short: "Issue a new server certificate from the same CA",
		Long: `Issue a new server certificate, valid two years, from the existing CA and
for the same server key. Agents pin the CA, so no initramfs changes. The
names are kept unless --dns or --ip is given; then those replace them all.
Restart sealroot (systemctl restart sealroot) to serve the new certificate.`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			cert, err := pki.Renew(pkiDir(stateDir), pki.RenewOptions{DNSNames: dns, IPs: ips})
			if err != nil {
				return err
			}
			if e.JSON {
				return e.printJSON(certSummary(cert))
			}
			_, err = fmt.Fprintf(e.Stdout, "server certificate: %s\nnames: %s\nvalid until: %s\nrestart sealroot to serve it\n",
				filepath.Join(pkiDir(stateDir), pki.ServerCertFile), strings.Join(certNames(cert.DNSNames, cert.IPAddresses), ", "),
				cert.NotAfter.UTC().Format(time.RFC3339))
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	f.StringSliceVar(&dns, "dns", nil, "server DNS `name` (repeatable; replaces the current names)")
	f.IPSliceVar(&ips, "ip", nil, "server IP `address` (repeatable; replaces the current names)")
	return c
}

func newPKIStatusCmd(e *env) *cobra.Command {
	var stateDir string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the CA and server certificate and warn when one expires within 30 days",
		Args:  cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			dir := pkiDir(stateDir)
			ca, err := pki.LoadCA(filepath.Join(dir, pki.CACertFile))
			if err != nil {
				return err
			}
			tc, err := pki.LoadServer(dir)
			if err != nil {
				return err
			}
			srv, err := pki.ServerLeaf(tc)
			if err != nil {
				return err
			}
			now := time.Now()
			_, warning := pki.CheckValidity(srv, now)
			if e.JSON {
				return e.printJSON(struct {
					CA      certInfo `json:"ca"`
					Server  certInfo `json:"server"`
					Warning string   `json:"warning,omitempty"`
				}{certSummary(ca), certSummary(srv), warning})
			}
			fmt.Fprintf(e.Stdout, "CA:          %s, valid %s to %s\n", ca.Subject.CommonName,
				ca.NotBefore.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(e.Stdout, "server:      %s, valid %s to %s\nnames:       %s\n", srv.Subject.CommonName,
				srv.NotBefore.UTC().Format(time.RFC3339), srv.NotAfter.UTC().Format(time.RFC3339),
				strings.Join(certNames(srv.DNSNames, srv.IPAddresses), ", "))
			if warning != "" {
				fmt.Fprintf(e.Stdout, "WARNING:     %s\n", warning)
			}
			return nil
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	return c
}

type certInfo struct {
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Names     []string  `json:"names,omitempty"`
}

func certSummary(c *x509.Certificate) certInfo {
	return certInfo{c.Subject.CommonName, c.NotBefore.UTC(), c.NotAfter.UTC(), certNames(c.DNSNames, c.IPAddresses)}
}

func certNames(dns []string, ips []net.IP) []string {
	names := append([]string(nil), dns...)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	return names
}
