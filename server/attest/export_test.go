package attest

import (
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/loadgen"
)

// BenchEnv is a server with its own store, audit log and secrets, for
// benchmarks in package attest_test, which may import the packages that
// import this one (history, metrics).
type BenchEnv struct {
	Server *Server
	Store  store.Store
	mgr    *machines.Manager
}

// NewBenchEnv returns a server as BenchmarkAttestation uses it.
func NewBenchEnv(tb testing.TB) *BenchEnv {
	s, mgr := benchServer(tb)
	return &BenchEnv{Server: s, Store: s.store, mgr: mgr}
}

// SetObserver makes o the server's observer (Config.Observer).
func (e *BenchEnv) SetObserver(o Observer) { e.Server.observer = o }

// SetHistory makes h the server's boot history (Config.History).
func (e *BenchEnv) SetHistory(h History) { e.Server.history = h }

// Enroll enrolls and approves each agent.
func (e *BenchEnv) Enroll(tb testing.TB, agents []*loadgen.Agent) {
	enroll(tb, e.Server, e.mgr, agents)
}

// Round attests each agent once (each must get a credential) and returns
// the process's CPU time in the server's phases (attestRound).
func (e *BenchEnv) Round(tb testing.TB, agents []*loadgen.Agent) time.Duration {
	return attestRound(tb, e.Server, agents, nil, nil)
}

// BenchAgents makes n simulated machines.
func BenchAgents(tb testing.TB, n int) []*loadgen.Agent { return benchAgents(tb, n) }

// CPUTime is the process's user and system CPU time so far.
func CPUTime(tb testing.TB) time.Duration { return cpuTime(tb) }

// LineFactor is how many hellos per exchange slot may wait in line.
const LineFactor = lineFactor
