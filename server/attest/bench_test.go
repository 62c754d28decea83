package attest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/wire"
)

// BenchmarkAttestation measures the server's whole cost of one successful
// attestation of an approved machine: identity and activation challenge,
// then activation proof, quote and event-log verification, policy, sealing
// and the store and audit updates. The simulated clients' keys are made
// before the timer starts and their answers (software TPM) are computed
// with the timer stopped. Run in parallel over GOMAXPROCS goroutines, it
// reports attestations/s.
//
// BenchmarkObservability (package attest_test) runs it with boot history
// and metrics on against off.
func BenchmarkAttestation(b *testing.B) {
	s, mgr := benchServer(b)
	agents := benchAgents(b, 64)
	enroll(b, s, mgr, agents)
	// Rounds of one attestation per machine (a machine attests one boot
	// at a time: two exchanges of one boot in flight get one credential).
	// The process's CPU time in the timed phases is reported too: on a
	// machine shared with other work it is steadier than the rate, which
	// counts time spent waiting for a CPU.
	b.ResetTimer()
	b.StopTimer()
	var cpu time.Duration
	for first := 0; first < b.N; first += len(agents) {
		n := min(len(agents), b.N-first)
		cpu += attestRound(b, s, agents[:n], b.StartTimer, b.StopTimer)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attestations/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
}

// benchAgents returns n simulated machines (software TPMs). Their keys
// take most of a benchmark's setup, so they are made once per test
// binary and shared: each benchmark enrolls them at servers of its own.
func benchAgents(tb testing.TB, n int) []*loadgen.Agent {
	agentCache.Lock()
	defer agentCache.Unlock()
	for len(agentCache.agents) < n {
		a, err := loadgen.NewAgent(rand.Reader, loadgen.DefaultSpec())
		if err != nil {
			tb.Fatal(err)
		}
		agentCache.agents = append(agentCache.agents, a)
	}
	return agentCache.agents[:n]
}

var agentCache struct {
	sync.Mutex
	agents []*loadgen.Agent
}

// enroll enrolls each agent at s (pending), then approves it.
func enroll(tb testing.TB, s *Server, mgr *machines.Manager, agents []*loadgen.Agent) {
	for _, a := range agents {
		if m, _ := runExchange(tb, s, a); m == nil {
			tb.Fatal("enroll failed")
		}
		if _, err := mgr.Approve(context.Background(), MachineIDOf(a), api.ApproveOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
}

// attestRound attests each agent once at s, in three phases across many
// goroutines (as many machines boot at once): the server's start
// (timed), the clients' answers (untimed: software TPMs), the server's
// finish (timed). Each agent must get a credential. It returns the
// process's CPU time in the timed phases; start and stop, if not nil,
// are called around each timed phase.
func attestRound(tb testing.TB, s *Server, agents []*loadgen.Agent, start, stop func()) time.Duration {
	n := len(agents)
	xs := make([]started, n)
	evs := make([]*wire.Evidence, n)
	timed := func(phase func(i int)) time.Duration {
		if start != nil {
			start()
		}
		cpu0 := cpuTime(tb)
		parallel(n, phase)
		cpu := cpuTime(tb) - cpu0
		if stop != nil {
			stop()
		}
		return cpu
	}
	cpu := timed(func(i int) { xs[i] = startExchange(tb, s, agents[i]) })
	parallel(n, func(i int) { evs[i] = answer(tb, xs[i], agents[i]) })
	cpu += timed(func(i int) {
		m, err := xs[i].x.finish(context.Background(), evs[i])
		if _, ok := m.(*wire.Credential); !ok {
			tb.Errorf("attestation of %s: got %#v (%v), want a credential", xs[i].x.machineID[:12], m, err)
		}
	})
	return cpu
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallel runs fn(0..n-1) on 64 goroutines.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// MachineIDOf is the machine ID of a simulated agent.
func MachineIDOf(a *loadgen.Agent) string {
	sum := sha256.Sum256(a.TPM.EKPublic())
	return hexString(sum[:])
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// runExchange runs one attestation through the server's exchange without
// a transport.
func runExchange(tb testing.TB, s *Server, a *loadgen.Agent) (wire.Message, error) {
	st := startExchange(tb, s, a)
	return st.x.finish(context.Background(), answer(tb, st, a))
}

// started is an exchange waiting for its evidence.
type started struct {
	x  *exchange
	ch *wire.Challenge
}

func startExchange(tb testing.TB, s *Server, a *loadgen.Agent) started {
	ctx := context.Background()
	exporter := make([]byte, wire.ExporterLength)
	rand.Read(exporter)
	x := s.newExchange("bench", exporter)
	id, _ := a.Identity(ctx)
	m, err := x.start(ctx, &wire.Hello{EKPublic: id.EKPublic, AKPublic: id.AKPublic})
	s.live.remove(x) // not endable: no stream
	if err != nil {
		tb.Errorf("start: %v", err)
	}
	ch, _ := m.(*wire.Challenge)
	return started{x, ch}
}

// answer computes the client's evidence for x's challenge.
func answer(tb testing.TB, st started, a *loadgen.Agent) *wire.Evidence {
	ctx := context.Background()
	x := st.x
	secret, err := a.ActivateCredential(ctx, st.ch.CredentialBlob, st.ch.EncryptedSecret)
	if err != nil {
		tb.Errorf("activate: %v", err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(wire.ActivationProofData(x.nonce, x.exporter, x.machineID))
	pcrs, _ := a.ReadPCRs(ctx, x.pcrs)
	quote, sig, err := a.Quote(ctx, wire.QualifyingData(x.nonce, x.exporter, x.machineID), x.pcrs)
	if err != nil {
		tb.Errorf("quote: %v", err)
	}
	log, _ := a.EventLog()
	return &wire.Evidence{ActivationProof: mac.Sum(nil), Quote: quote, Signature: sig, PCRs: pcrs, EventLog: log}
}

func benchServer(tb testing.TB) (*Server, *machines.Manager) {
	dir := tb.TempDir()
	if err := pki.Init(dir, pki.InitOptions{DNSNames: []string{"bench"}}); err != nil {
		tb.Fatal(err)
	}
	cert, err := pki.LoadServer(dir)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	al, err := audit.Open(filepath.Join(dir, "audit.log"))
	if err != nil {
		tb.Fatal(err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(dir, "secrets.key"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { al.Close(); db.Close() })
	mgr := machines.New(machines.Config{Store: db, Box: box, Audit: al, Logger: hclog.NewNullLogger()})
	s, err := New(Config{Certificate: cert, Store: db, Audit: al, Secrets: mgr})
	if err != nil {
		tb.Fatal(err)
	}
	return s, mgr
}
