package agent

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sealroot/sealroot/wire"
)

// A Step is one named stage of the boot sequence.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
}

// StepError is the failure of one step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// RunSteps runs steps in order and prints one line per step on console:
//
//	sealroot: [ok] dhcp (2.41s)
//	sealroot: [FAILED] attest (0.12s): <reason>
//
// It stops at the first failure and returns it as a *StepError, with the
// time each step that ran took (the failed one included), for the boot
// report.
func RunSteps(ctx context.Context, console io.Writer, steps []Step) ([]wire.StageTiming, error) {
	var timings []wire.StageTiming
	for _, s := range steps {
		start := time.Now()
		err := s.Run(ctx)
		took := time.Since(start)
		timings = append(timings, wire.StageTiming{Name: s.Name, Duration: took})
		if err != nil {
			fmt.Fprintf(console, "sealroot: [FAILED] %s (%.2fs): %v\n", s.Name, took.Seconds(), err)
			return timings, &StepError{Step: s.Name, Err: err}
		}
		fmt.Fprintf(console, "sealroot: [ok] %s (%.2fs)\n", s.Name, took.Seconds())
	}
	return timings, nil
}
