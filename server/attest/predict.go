package attest

import (
	"context"

	"github.com/sealroot/sealroot/server/policy"
	"github.com/sealroot/sealroot/server/predict"
	"github.com/sealroot/sealroot/server/store"
)

// Predictor returns the prediction for the boot artifacts the server
// serves now; *predict.Cache is one.
type Predictor interface {
	Prediction() (*predict.Prediction, error)
}

// evaluate applies policy to an approved machine, with the current
// prediction when its policy is store.PolicyPredicted. Without a predictor,
// or when predicting fails, such a machine is refused (policy says why;
// the error goes to the server log).
func (x *exchange) evaluate(_ context.Context, observed *store.BootState) policy.Verdict {
	var pred *predict.Prediction
	if x.machine.Policy == store.PolicyPredicted && x.s.predictor != nil {
		p, err := x.s.predictor.Prediction()
		if err != nil {
			x.s.logger.Error("cannot predict the boot measurements", "machine", x.machineID, "error", err)
		}
		pred = p
	}
	return policy.EvaluateWith(x.machine, observed, pred)
}
