package boot

import (
	"net/http"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/attest"
	boothttp "github.com/sealroot/sealroot/server/boot/http"
	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/predict"
)

// Live holds what SIGHUP changes without a restart: the boot settings the
// HTTP service and the predictor read on every request. The zero Live
// predicts nothing; it serves HTTP once Set.
type Live struct {
	boot      atomic.Pointer[config.BootConfig] // defaulted; nil without boot services
	handler   atomic.Pointer[http.Handler]      // boot HTTP handler for boot
	predictor atomic.Pointer[attest.Predictor]
}

// Prediction implements attest.Predictor with the current boot settings;
// without a UKI there is no prediction (machines on policy "predicted"
// are refused, as with no predictor at all).
func (l *Live) Prediction() (*predict.Prediction, error) {
	p := l.predictor.Load()
	if p == nil || *p == nil {
		return nil, nil
	}
	return (*p).Prediction()
}

// SetPredictor makes p (nil: none) the predictor.
func (l *Live) SetPredictor(p attest.Predictor) { l.predictor.Store(&p) }

// ServeHTTP serves boot requests with the current handler.
func (l *Live) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*l.handler.Load()).ServeHTTP(w, r)
}

// Set makes b (defaulted) the boot settings of the HTTP service and of
// the predictor.
func (l *Live) Set(b *config.BootConfig, scripts boothttp.ScriptFunc, stateDir string, logger hclog.Logger) {
	h := boothttp.NewHandler(b.ArtifactsDir, scripts, logger, boothttp.WithRateCap(b.DownloadRateKiB<<10, nil))
	l.boot.Store(b)
	l.handler.Store(&h)
	l.SetPredictor(Predictor(b, stateDir))
}

// Config is the boot section being served (defaulted), nil before Set.
func (l *Live) Config() *config.BootConfig { return l.boot.Load() }
