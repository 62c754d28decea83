package nfs

import (
	"regexp"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// ganesha's log line: "date time : epoch E : host : prog-pid[thread] func :COMPONENT :LEVEL :message".
var logLine = regexp.MustCompile(`^.*? : epoch \S+ : \S+ : \S+\[([^\]]*)\] (\S+) :([^:]*) :([A-Z_]+) :(.*)$`)

// event is what a log line tells the supervisor.
type event int

const (
	eventNone        event = iota
	eventInitialized       // the server serves the exports it read
	eventReloaded          // a SIGHUP reload of the exports finished
)

// harmless are messages ganesha logs as critical in every run without
// DBus, rpcbind or Kerberos, which sealroot does not use.
var harmless = []string{
	"dbus", "DBUS", "Cannot register NFS V4", "Cannot acquire credentials for principal",
	"keytab", "default realm", "gssd_refresh_krb5", "RADOS", "Extra references",
}

// logGanesha folds one line of ganesha's log into l and reports the event
// it marks.
func logGanesha(l hclog.Logger, line string) event {
	m := logLine.FindStringSubmatch(line)
	if m == nil {
		if line = strings.TrimSpace(line); line != "" {
			l.Info(line)
		}
		return eventNone
	}
	thread, fn, component, level, msg := m[1], m[2], m[3], m[4], strings.TrimSpace(m[5])
	switch {
	case strings.Contains(msg, "NFS SERVER INITIALIZED"):
		l.Info("ganesha serving")
		return eventInitialized
	case strings.Contains(msg, "Reread exports complete"):
		l.Info("ganesha reloaded exports")
		return eventReloaded
	case strings.Trim(msg, "-") == "":
		return eventNone
	}
	lvl := levelOf(level)
	for _, h := range harmless {
		if strings.Contains(msg, h) || component == "DBUS" {
			lvl = hclog.Debug
		}
	}
	l.Log(lvl, msg, "component", component, "func", fn, "thread", thread)
	return eventNone
}

func levelOf(ganesha string) hclog.Level {
	switch ganesha {
	case "FATAL", "CRIT":
		return hclog.Error
	case "MAJ", "WARN":
		return hclog.Warn
	default: // EVENT, INFO, NULL, DEBUG, MID_DEBUG, FULL_DEBUG: routine
		return hclog.Debug
	}
}
