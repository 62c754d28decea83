package server

import (
	"net/http"
	"reflect"
	"sync/atomic"

	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/boot"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/predict"
)

// live holds what SIGHUP changes without a restart: the boot settings the
// HTTP service and the predictor read on every request.
type live struct {
	boot      atomic.Pointer[config.BootConfig] // defaulted; nil without boot services
	handler   atomic.Pointer[http.Handler]      // boot HTTP handler for boot
	predictor atomic.Pointer[attest.Predictor]
}

// Prediction implements attest.Predictor with the current boot settings;
// without a UKI there is no prediction (machines on policy "predicted"
// are refused, as with no predictor at all).
func (l *live) Prediction() (*predict.Prediction, error) {
	p := l.predictor.Load()
	if p == nil || *p == nil {
		return nil, nil
	}
	return (*p).Prediction()
}

func (l *live) setPredictor(p attest.Predictor) { l.predictor.Store(&p) }

// ServeHTTP serves boot requests with the current handler.
func (l *live) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*l.handler.Load()).ServeHTTP(w, r)
}

// setBoot makes b (defaulted) the boot settings of the HTTP service.
func (s *Server) setBoot(b *config.BootConfig, scripts boothttp.ScriptFunc) {
	h := boothttp.NewHandler(b.ArtifactsDir, scripts, s.logger)
	s.live.boot.Store(b)
	s.live.handler.Store(&h)
	s.live.setPredictor(boot.Predictor(b, s.cfg.StateDir))
}

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

	if b := s.live.boot.Load(); b != nil && next.Boot != nil {
		nb := *next.Boot
		nb.Defaults(next.StateDir)
		if restart := bootRestartFields(b, &nb); len(restart) > 0 {
			needRestart = append(needRestart, restart...)
		} else if !reflect.DeepEqual(*b, nb) {
			s.setBoot(&nb, boot.Scripts(&nb, s.bootIP, boot.UKIBuilder(&nb), s.logger))
			applied = append(applied, "boot")
		}
		cur.Boot, next.Boot = nil, nil
	}
	for _, f := range changedFields(cur, next) {
		needRestart = append(needRestart, f)
	}
	return applied, needRestart
}

// bootRestartFields lists the boot fields whose change needs new
// listeners or a new DHCP service.
func bootRestartFields(cur, next *config.BootConfig) []string {
	a, b := *cur, *next
	for _, c := range []*config.BootConfig{&a, &b} { // the live fields
		c.ArtifactsDir, c.Kernel, c.Initrd, c.UKI, c.Cmdline = "", "", "", "", ""
	}
	var out []string
	for _, f := range changedFields(a, b) {
		out = append(out, "boot."+f)
	}
	return out
}

// changedFields lists the JSON names of the top-level fields of two
// structs of the same type that differ.
func changedFields[T any](a, b T) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _ := jsonFieldName(va.Type().Field(i))
			out = append(out, name)
		}
	}
	return out
}

func jsonFieldName(sf reflect.StructField) (string, bool) {
	tag := sf.Tag.Get("json")
	for i := 0; i < len(tag); i++ {
		if tag[i] == ',' {
			tag = tag[:i]
			break
		}
	}
	if tag == "" {
		return sf.Name, false
	}
	return tag, true
}
