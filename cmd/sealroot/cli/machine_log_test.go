package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

// logViews is api.ObserveService over the test service's store for boot
// logs, with fixed lists of what is served.
type logViews struct {
	svc      *apitest.Service
	sessions []api.ISCSISession
}

func (v logViews) BootLogs(ctx context.Context, ref string) ([]api.BootLog, error) {
	m, err := v.svc.Machine(ctx, ref)
	if err != nil {
		return nil, err
	}
	logs, err := v.svc.Store.BootLogs(ctx, m.ID)
	var out []api.BootLog
	for _, l := range logs {
		out = append(out, api.BootLog{Time: l.Time, Remote: l.Remote, Failed: l.Failed, Error: l.Error, Log: l.Log})
	}
	return out, err
}
func (logViews) TunnelPeers(context.Context) ([]api.TunnelPeer, error) { return nil, nil }
func (v logViews) ISCSISessions(context.Context) ([]api.ISCSISession, error) {
	return v.sessions, nil
}
func (logViews) DHCPLeases(context.Context) ([]api.DHCPLease, error) { return nil, nil }
func (logViews) NFSExports(context.Context) ([]api.NFSExport, error) { return nil, nil }

// `machine log` prints the stored boot logs with the agent's text made
// safe; `machine show` prints each boot's stage timeline and what is
// served to the machine.
func TestMachineLogAndTimeline(t *testing.T) {
	ctx := context.Background()
	ms := testMachines()
	ms[0].History = []store.BootAttempt{{Time: seen, Server: "sr-1", Remote: "10.0.0.5:4242", Outcome: "allowed", Check: "policy",
		Stages: []wire.StageTiming{{Name: "network", Duration: 2410 * time.Millisecond}, {Name: "attest", Duration: 812 * time.Millisecond},
			{Name: "root", Duration: 1200 * time.Millisecond}},
		Failed: "root", Error: "iscsi login refused"}}
	svc := apitest.NewService(t, ms...)
	for i, l := range []string{"first boot\n", "sealroot: [ok] tunnel (0.02s)\nevil \x1b[2J line\n"} {
		err := svc.Store.PutBootLog(ctx, idA, store.BootLog{Time: seen.Add(time.Duration(i) * time.Minute), Remote: "10.200.0.7:4480",
			Failed: "root", Error: "iscsi login refused", Log: l})
		if err != nil {
			t.Fatal(err)
		}
	}
	sock := apitest.Serve(t, svc, api.WithObserve(logViews{svc: svc, sessions: []api.ISCSISession{{MachineID: idA,
		Initiator: "iqn.x:a", Target: "iqn.y:a", Remote: "10.200.0.7:40000", ReadBytes: 4096, Commands: 3}}}))

	r := run(t, sock, "", "machine", "log", "web1")
	if r.code != 0 || strings.Contains(r.stdout, "first boot") || !strings.Contains(r.stdout, "[ok] tunnel") ||
		!strings.Contains(r.stdout, ": root failed: iscsi login refused") || strings.Contains(r.stdout, "\x1b") {
		t.Errorf("machine log = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, sock, "", "machine", "log", "--all", "web1")
	if strings.Count(r.stdout, "== boot log") != 2 {
		t.Errorf("machine log --all:\n%s", r.stdout)
	}
	r = run(t, sock, "", "--json", "machine", "log", "web1")
	var logs []api.BootLog
	if err := json.Unmarshal([]byte(r.stdout), &logs); err != nil || len(logs) != 1 || logs[0].Failed != "root" {
		t.Errorf("machine log --json = %v, %+v", err, logs)
	}
	r = run(t, sock, "", "machine", "log", "bbbbbbbb2222")
	if r.code != 0 || !strings.Contains(r.stdout, "no boot log") {
		t.Errorf("machine log without logs = exit %d %q", r.code, r.stdout)
	}

	r = run(t, sock, "", "machine", "show", "web1")
	for _, want := range []string{
		"      agent: network 2.41s > attest 0.81s > root FAILED 1.20s: iscsi login refused\n",
		"Serving now:\n  iscsi        iqn.y:a from 10.200.0.7:40000",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("machine show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = run(t, sock, "", "--json", "machine", "show", "web1")
	var m api.Machine
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || len(m.History) != 1 || len(m.History[0].Stages) != 3 ||
		m.History[0].Stages[0] != (api.StageTiming{Name: "network", Millis: 2410}) {
		t.Errorf("machine show --json history = %v, %+v", err, m.History)
	}
}
