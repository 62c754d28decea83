package cli

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sealroot/sealroot/internal/cmdline"
	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server"
)

// DefaultStateDir is where sealroot keeps its state.
const DefaultStateDir = "/var/lib/sealroot"

// pkiDir is the directory of the CA and server certificate under stateDir.
func pkiDir(stateDir string) string { return server.PKIDir(stateDir) }

type pkiInitArgs struct {
	stateDir string
	dns      []string
	ips      []net.IP
	newCA    bool
}

func newPKICmd(e *env) *cobra.Command {
	var args pkiInitArgs
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA and the server certificate agents pin",
		Long: `Create sealroot's CA and a server certificate signed by it in
<state-dir>/pki. The server certificate names the --dns and --ip addresses
agents use to reach the server (default: localhost, 127.0.0.1 and ::1).
The CA is built into every initramfs (agents pin it). An existing CA is
never replaced unless --new-ca; then every initramfs must be rebuilt and
every machine rebooted with it. To extend or change the server certificate
with the same CA, use "sealroot pki renew".`,
		Args: cmdline.ExactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error { return runPKIInit(e, args) },
	}
	f := initCmd.Flags()
	f.StringVar(&args.stateDir, "state-dir", DefaultStateDir, "sealroot state `dir`")
	f.StringSliceVar(&args.dns, "dns", nil, "server DNS `name` (repeatable)")
	f.IPSliceVar(&args.ips, "ip", nil, "server IP `address` (repeatable)")
	f.BoolVar(&args.newCA, "new-ca", false, "replace an existing CA (every initramfs must then be rebuilt)")
	return cmdline.Group("pki", "Manage sealroot's certificate authority", initCmd, newPKIRenewCmd(e), newPKIStatusCmd(e),
		newPKIIssueCmd(e), newPKIRequestCmd(e))
}

func runPKIInit(e *env, args pkiInitArgs) error {
	dir := pkiDir(args.stateDir)
	err := pki.Init(dir, pki.InitOptions{DNSNames: args.dns, IPs: args.ips, NewCA: args.newCA})
	if errors.Is(err, pki.ErrExists) {
		return fmt.Errorf("%w: kept. To renew the server certificate: sealroot pki renew. "+
			"To replace the CA (every initramfs must then be rebuilt): --new-ca", err)
	}
	if err != nil {
		return err
	}
	if args.newCA {
		fmt.Fprintf(e.Stderr, "WARNING: a new CA was made (if one existed, it is gone). Agents pin the CA: rebuild every initramfs (and UKI) with the new %s, put them where serve reads them, and reboot every machine.\n",
			filepath.Join(dir, pki.CACertFile))
	}
	caCert := filepath.Join(dir, pki.CACertFile)
	serverCert := filepath.Join(dir, pki.ServerCertFile)
	if e.JSON {
		return e.printJSON(struct {
			CACert     string `json:"ca_cert"`
			ServerCert string `json:"server_cert"`
		}{caCert, serverCert})
	}
	_, err = fmt.Fprintf(e.Stdout, "CA certificate: %s (give it to agents)\nserver certificate: %s\n", caCert, serverCert)
	return err
}
