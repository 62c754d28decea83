package server

import (
	"reflect"

	"github.com/sealroot/sealroot/server/boot"
	"github.com/sealroot/sealroot/server/config"
)

// Reload applies next where it can without a restart: the log level, and
// the boot section's artifacts directory, kernel, initrd, UKI and command
// line (served from the next request on). It returns what it applied and
// the JSON paths of the other changes, which need a restart; those keep
// their running values. next must be valid (Validate).
func (s *Server) Reload(next config.Config) (applied, needRestart []string) {
	next.Defaults()
	cur := s.cfg
	if next.LogLevel != cur.LogLevel {
		s.logger.SetLevel(next.HCLogLevel())
		applied = append(applied, "log_level")
	}
	s.cfg.LogLevel = next.LogLevel
	cur.LogLevel = next.LogLevel

	if b := s.live.Config(); b != nil && next.Boot != nil {
		nb := *next.Boot
		nb.Defaults(next.StateDir)
		if restart := config.BootRestartFields(b, &nb); len(restart) > 0 {
			needRestart = append(needRestart, restart...)
		} else if !reflect.DeepEqual(*b, nb) {
			s.live.Set(&nb, boot.Scripts(&nb, s.bootIP, boot.UKIBuilder(&nb, s.cfg.StateDir), s.logger), s.cfg.StateDir, s.logger)
			applied = append(applied, "boot")
		}
		cur.Boot, next.Boot = nil, nil
	}
	for _, f := range config.ChangedFields(cur, next) {
		needRestart = append(needRestart, f)
	}
	return applied, needRestart
}
