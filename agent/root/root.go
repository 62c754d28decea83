// Package root defines how the agent mounts the root file system that a
// credential's RootPlan describes: one Stage per RootPlan.Kind, looked up
// in a Registry. The agent switches to the returned directory with
// switch_root; a stage that returns "" mounted nothing (kind "none").
//
// Stage implementations live in subpackages (iscsi, nfs, volatile).
package root

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/sealroot/sealroot/wire"
)

// DefaultInit is what the agent executes in the new root when RootPlan.Init
// is empty.
const DefaultInit = "/sbin/init"

// ErrUnknownKind is returned by Lookup for a kind with no stage.
var ErrUnknownKind = errors.New("unknown root kind")

// Stage mounts one kind of root.
type Stage interface {
	// Name is the RootPlan.Kind the stage handles.
	Name() string
	// Mount prepares the root described by p and returns the directory to
	// switch to, or "" when there is nothing to switch to.
	Mount(ctx context.Context, p *wire.Payload) (newRoot string, err error)
}

// Registry maps RootPlan kinds to stages. It is not safe for concurrent
// registration; build it before use.
type Registry struct {
	stages map[string]Stage
}

// NewRegistry returns a registry holding stages.
func NewRegistry(stages ...Stage) *Registry {
	r := &Registry{stages: map[string]Stage{}}
	for _, s := range stages {
		r.Register(s)
	}
	return r
}

// Register adds s, replacing any stage of the same name.
func (r *Registry) Register(s Stage) { r.stages[s.Name()] = s }

// Lookup returns the stage for kind.
func (r *Registry) Lookup(kind string) (Stage, error) {
	s, ok := r.stages[kind]
	if !ok {
		return nil, fmt.Errorf("%w %q (this agent knows %v)", ErrUnknownKind, kind, r.Kinds())
	}
	return s, nil
}

// Kinds returns the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	kinds := make([]string, 0, len(r.stages))
	for k := range r.stages {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// Init returns the program to execute in the new root for plan.
func Init(plan wire.RootPlan) string {
	if plan.Init == "" {
		return DefaultInit
	}
	return plan.Init
}

// None is the stage of kind "none": the machine attests and mounts nothing.
type None struct{}

// Name implements Stage.
func (None) Name() string { return wire.RootNone }

// Mount implements Stage; it mounts nothing.
func (None) Mount(context.Context, *wire.Payload) (string, error) { return "", nil }
