package wire

import "fmt"

// CheckHomeServerDown is the refusal check of a release whose machine's
// home server (the server keeping its root) is down: the attesting
// server could not have the boot readied there.
const CheckHomeServerDown = "home-server-down"

// HomeServerDownMessage is what a machine says, at boot, when its home
// server is down; server is its name or tunnel endpoint, "" if unknown.
func HomeServerDownMessage(server string) string {
	if server == "" {
		server = "of this machine's root"
	}
	return fmt.Sprintf("home server %s is down or unreachable: the machine attested, but its root lives there and stays unavailable until that server is back (tell an operator)", server)
}
