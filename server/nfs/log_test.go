package nfs

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLogGanesha(t *testing.T) {
	const prefix = "22/11/2026 05:44:50 : epoch 6b028152 : vm : nfs-ganesha-10723[main] "
	for _, tc := range []struct {
		name, line string
		event      event
		want       string // in the hclog output; "" = nothing logged
	}{
		{"initialized", prefix + "nfs_start :NFS STARTUP :EVENT :             NFS SERVER INITIALIZED", eventInitialized, "[INFO]  ganesha serving"},
		{"reloaded", prefix + "reread_exports :CONFIG :EVENT :Reread exports complete", eventReloaded, "[INFO]  ganesha reloaded exports"},
		{"banner_dropped", prefix + "nfs_start :NFS STARTUP :EVENT :-------------------------------------------------", eventNone, ""},
		{"crit_is_error", prefix + "main :NFS STARTUP :CRIT :Error setting parameters from configuration file.", eventNone, "[ERROR] Error setting parameters from configuration file.: component=\"NFS STARTUP\" func=main thread=main"},
		{"fatal_is_error", prefix + "main :NFS STARTUP :FATAL :Fatal errors.  Server exiting...", eventNone, "[ERROR] Fatal errors."},
		{"warn", prefix + "main :NFS STARTUP :WARN :No export entries found", eventNone, "[WARN]  No export entries found"},
		{"event_is_debug", prefix + "main :MAIN :EVENT :nfs-ganesha Starting: Ganesha Version 4.3", eventNone, "[DEBUG] nfs-ganesha Starting"},
		{"dbus_crit_is_debug", prefix + "gsh_dbus_pkginit :DBUS :CRIT :dbus_bus_get failed", eventNone, "[DEBUG] dbus_bus_get failed"},
		{"rpcbind_is_debug", prefix + "Register_program :DISP :MAJ :Cannot register NFS V4 on TCP", eventNone, "[DEBUG] Cannot register NFS V4 on TCP"},
		{"unparsed_kept", "ganesha.nfsd: something odd", eventNone, "[INFO]  ganesha.nfsd: something odd"},
		{"blank_dropped", "  ", eventNone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})
			if got := logGanesha(l, tc.line); got != tc.event {
				t.Errorf("event = %d; want %d", got, tc.event)
			}
			switch out := buf.String(); {
			case tc.want == "" && out != "":
				t.Errorf("logged %q; want nothing", out)
			case !strings.Contains(out, tc.want):
				t.Errorf("logged %q; want %q", out, tc.want)
			}
		})
	}
}
