package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	agentattest "github.com/sealroot/sealroot/agent/attest"
	"github.com/sealroot/sealroot/agent/login"
	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/attest"
	"github.com/sealroot/sealroot/server/audit"
	"github.com/sealroot/sealroot/server/rootiscsi"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/users"
	"github.com/sealroot/sealroot/test/loadgen"
	"github.com/sealroot/sealroot/test/testenv"
	"github.com/sealroot/sealroot/wire"
)

// fastHash keeps the tests' argon2id cheap; the parameters travel in
// each hash, so the code path is the real one.
var fastHash = users.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}

// Passwords of the test users; none may appear in a log or the audit.
const (
	alicePW = "alice-Secret-1"
	bobPW   = "bob-Secret-2"
	wrongPW = "Wrong-Guess-3"
)

// withLogins checks logins with server/users over the env's own store and
// audit log.
func withLogins(t *testing.T) func(*attest.Config) {
	return func(c *attest.Config) {
		db := c.Store.(*store.DB)
		al := c.Audit
		chk, err := users.NewChecker(users.CheckerConfig{Users: db, Params: &fastHash, Audit: func(r users.Record) error {
			return al.Record(audit.Entry{Time: time.Now(), Actor: "server", MachineID: r.MachineID, Action: "login",
				Outcome: r.Outcome, Check: "login", Reason: "user " + r.User + ": " + r.Reason})
		}})
		if err != nil {
			t.Fatalf("NewChecker: %v", err)
		}
		c.Logins = chk
	}
}

// loginMachine is a machine of a per-user root test: the first is the
// TPM simulator (one per process), the others software TPMs that cannot
// unseal (the agent stops at the credential).
type loginMachine struct {
	dev      agentattest.Device
	id       string
	noUnseal bool
}

func newLoginMachine(t *testing.T, i int) *loginMachine {
	t.Helper()
	if i == 0 {
		m := newMachine(t, defaultSpec)
		return &loginMachine{dev: m.dev, id: m.id}
	}
	spec := loadgen.DefaultSpec()
	spec.Firmware = fmt.Sprintf("OVMF 2022.11 desk %d", i)
	a, err := loadgen.NewAgent(rand.Reader, spec)
	if err != nil {
		t.Fatalf("loadgen.NewAgent: %v", err)
	}
	return &loginMachine{dev: a, id: wire.MachineID(a.TPM.EKPublic()), noUnseal: true}
}

// perUserEnv is an env with users alice and bob and machines whose root
// is per user.
func perUserEnv(t *testing.T, logs *testenv.Buffer, names ...string) (*testEnv, []*loginMachine) {
	t.Helper()
	e := newEnv(t, withLogins(t), captureLog(t, logs))
	ctx := context.Background()
	for name, pw := range map[string]string{"alice": alicePW, "bob": bobPW} {
		h, err := users.Hash([]byte(pw), fastHash, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.db.PutUser(ctx, &store.User{Name: name, Hash: h}, true); err != nil {
			t.Fatalf("PutUser: %v", err)
		}
	}
	var ms []*loginMachine
	for i, name := range names {
		m := newLoginMachine(t, i)
		if _, err := attestOnce(t, e.client(t, m.dev, func(c *agentattest.Config) { c.NoUnseal = m.noUnseal })); err == nil {
			t.Fatal("unknown machine attested")
		}
		if _, err := e.mgr.Approve(ctx, m.id[:16], api.ApproveOptions{Name: name}); err != nil {
			t.Fatalf("Approve: %v", err)
		}
		_, err := e.db.UpdateMachine(ctx, m.id, func(mc *store.Machine) error {
			mc.Root = wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "desk", wire.PerUserParam: "true"}}
			return nil
		})
		if err != nil {
			t.Fatalf("set root: %v", err)
		}
		ms = append(ms, m)
	}
	return e, ms
}

// console is what a person types on a machine's console, and what the
// console shows.
type console struct {
	in  io.Reader
	out testenv.Buffer
}

func typed(lines ...string) *console {
	return &console{in: strings.NewReader(strings.Join(lines, "\n") + "\n")}
}

// loginClient is an agent whose person types on con.
func (e *testEnv) loginClient(t *testing.T, m *loginMachine, con *console) *agentattest.Client {
	return e.client(t, m.dev, func(c *agentattest.Config) {
		c.NoUnseal = m.noUnseal
		c.Login = func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
			a := login.New(login.Console{In: con.in, Out: &con.out})
			a.Sleep = func(context.Context, time.Duration) error { return nil }
			return a.Run(ctx, first, send)
		}
	})
}

func (e *testEnv) lease(t *testing.T, user string) *store.UserLease {
	t.Helper()
	l, err := e.db.UserLease(context.Background(), user)
	if err != nil {
		return nil
	}
	return l
}

// TestPerUserLogin: a machine with a per-user root asks for a login after
// its attestation is allowed; a wrong password gets another prompt with
// the reason; the right one releases the root and leases it to the
// machine; a second machine logging in as the same user is told which
// machine holds it and may log in as another user; the holder's next boot
// or the operator frees it. No password reaches a log or the audit.
func TestPerUserLogin(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1", "desk-2")
	m1, m2 := ms[0], ms[1]

	con1 := typed("alice", wrongPW, "alice", alicePW)
	res, err := attestOnce(t, e.loginClient(t, m1, con1))
	if err != nil {
		t.Fatalf("login on desk-1: %v\nconsole:\n%s", err, con1.out.String())
	}
	if res.Payload.Root.Params[wire.PerUserParam] != "true" {
		t.Fatalf("root = %+v, want the per-user plan", res.Payload.Root)
	}
	if !strings.Contains(con1.out.String(), "login refused: wrong user name or password") {
		t.Fatalf("console after a wrong password:\n%s", con1.out.String())
	}
	l := e.lease(t, "alice")
	if l == nil || l.MachineID != m1.id || l.Claim != "" || l.Boot == 0 {
		t.Fatalf("lease of alice = %+v, want confirmed for desk-1", l)
	}
	if a := e.lastAudit(t, m1.id); a.Outcome != "allowed" || !strings.Contains(a.Reason, "root of user alice") {
		t.Fatalf("audit = %+v, want allowed with alice's root", a)
	}

	// desk-2: alice is refused naming desk-1; bob is fine.
	con2 := typed("alice", alicePW, "bob", bobPW)
	if _, err := attestOnce(t, e.loginClient(t, m2, con2)); err != nil {
		t.Fatalf("login on desk-2: %v\nconsole:\n%s", err, con2.out.String())
	}
	if !strings.Contains(con2.out.String(), "the root of user alice is in use on machine desk-1") {
		t.Fatalf("console of the second login of alice:\n%s", con2.out.String())
	}
	if l := e.lease(t, "alice"); l == nil || l.MachineID != m1.id {
		t.Fatalf("lease of alice = %+v after the refused login, want desk-1's", l)
	}
	if l := e.lease(t, "bob"); l == nil || l.MachineID != m2.id {
		t.Fatalf("lease of bob = %+v, want desk-2's", l)
	}

	// desk-1's next boot frees alice (it logs in as nobody: console closed).
	if _, err := attestOnce(t, e.loginClient(t, m1, typed("bob", bobPW))); err == nil {
		t.Fatal("desk-1 logged in as bob, held by desk-2")
	}
	// The refused boot did not release, so alice is still desk-1's.
	if l := e.lease(t, "alice"); l == nil || l.MachineID != m1.id {
		t.Fatalf("lease of alice = %+v, want desk-1's until it releases again", l)
	}
	if _, err := e.db.FreeUserLease(context.Background(), "alice", ""); err != nil {
		t.Fatalf("operator frees alice: %v", err)
	}
	// desk-2 boots again as alice: bob's lease ends with its next release.
	if _, err := attestOnce(t, e.loginClient(t, m2, typed("alice", alicePW))); err != nil {
		t.Fatalf("alice on desk-2 after the operator freed her root: %v", err)
	}
	if l := e.lease(t, "alice"); l == nil || l.MachineID != m2.id {
		t.Fatalf("lease of alice = %+v, want desk-2's", l)
	}
	if l := e.lease(t, "bob"); l != nil {
		t.Fatalf("lease of bob = %+v after desk-2 booted again, want none", l)
	}

	raw, err := os.ReadFile(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{alicePW, bobPW, wrongPW} {
		for where, text := range map[string]string{"audit log": string(raw), "server log": logs.String(),
			"console 1": con1.out.String(), "console 2": con2.out.String()} {
			if strings.Contains(text, pw) {
				t.Errorf("%s shows a password", where)
			}
		}
	}
	if !strings.Contains(string(raw), `"action":"login","outcome":"refused","check":"login","reason":"user alice: wrong password"`) {
		t.Errorf("audit log has no refused login of alice:\n%s", raw)
	}
}

// TestPerUserLoginBound: wrong passwords are answered with a prompt up to
// MaxLoginTries, then the attestation is refused (check "login").
func TestPerUserLoginBound(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1")
	var lines []string
	for range attest.MaxLoginTries + 1 {
		lines = append(lines, "alice", wrongPW)
	}
	con := typed(lines...)
	_, err := attestOnce(t, e.loginClient(t, ms[0], con))
	e.wantRefused(t, err, ms[0].id, "login")
	if n := strings.Count(con.out.String(), "login refused"); n != attest.MaxLoginTries-1 {
		t.Fatalf("%d prompts with a reason, want %d:\n%s", n, attest.MaxLoginTries-1, con.out.String())
	}
	if e.lease(t, "alice") != nil {
		t.Fatal("refused logins leased alice's root")
	}
}

// TestPerUserLoginRace: two machines log in as alice at once: exactly one
// gets her root; the other is told it is in use.
func TestPerUserLoginRace(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1", "desk-2")
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	cons := make([]*console, len(ms))
	for i, m := range ms {
		cons[i] = typed("alice", alicePW)
		c := e.loginClient(t, m, cons[i])
		wg.Go(func() { _, errs[i] = attestOnce(t, c) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case err == nil:
			t.Fatal("both machines got alice's root")
		case !errors.Is(err, login.ErrAborted) || !strings.Contains(cons[i].out.String(), "is in use on machine"):
			t.Fatalf("loser %d: %v\nconsole:\n%s", i, err, cons[i].out.String())
		}
	}
	if won < 0 {
		t.Fatalf("no machine got alice's root: %v", errs)
	}
	if l := e.lease(t, "alice"); l == nil || l.MachineID != ms[won].id {
		t.Fatalf("lease = %+v, want the winner's", l)
	}
}

// TestPerUserLoginEndedByRevoke: a revoke while the machine waits for its
// person ends the attestation at once; nothing is leased.
func TestPerUserLoginEndedByRevoke(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1")
	pr, pw := io.Pipe()
	defer pw.Close()
	con := &console{in: pr}
	done := make(chan error, 1)
	c := e.loginClient(t, ms[0], con)
	go func() { _, err := attestOnce(t, c); done <- err }()
	waitFor(t, 20*time.Second, "the exchange waits for a person", func() bool { return e.srv.Waiting() == 1 })
	if _, err := e.mgr.Revoke(context.Background(), ms[0].id, "stolen"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	pw.Write([]byte("alice\n" + alicePW + "\n")) // too late
	err := <-done
	var r *agentattest.RefusedError
	if !errors.As(err, &r) || r.Check != "revoked" {
		t.Fatalf("attest after revoke during login = %v, want refused by check revoked", err)
	}
	if e.lease(t, "alice") != nil {
		t.Fatal("alice's root leased to a revoked machine")
	}
}

// TestPerUserLoginStaleRecord: an operator's change to the machine while
// its person logs in refuses the release (the record is re-checked in
// the releasing transaction), and frees the claimed lease.
func TestPerUserLoginStaleRecord(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1")
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan error, 1)
	c := e.loginClient(t, ms[0], &console{in: pr})
	go func() { _, err := attestOnce(t, c); done <- err }()
	waitFor(t, 20*time.Second, "the exchange waits for a person", func() bool { return e.srv.Waiting() == 1 })
	if _, err := e.db.UpdateMachine(context.Background(), ms[0].id, func(m *store.Machine) error { m.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("alice\n" + alicePW + "\n"))
	e.wantRefused(t, <-done, ms[0].id, "stale-record")
	if e.lease(t, "alice") != nil {
		t.Fatal("a refused release kept alice's claimed root")
	}
}

// TestPerUserISCSIRoot: a user's root is an iSCSI volume of its own, keyed
// by the user, which the credential's secrets log in to; the machine's
// next boot as another user withdraws the first user's root from it
// (the volume stays), and a revoke withdraws the user root it mounts.
func TestPerUserISCSIRoot(t *testing.T) {
	r := newRootEnv(t)
	var logs testenv.Buffer
	e := newEnv(t, withLogins(t), captureLog(t, &logs), withRoots(r.p))
	ctx := context.Background()
	for name, pw := range map[string]string{"alice": alicePW, "bob": bobPW} {
		h, err := users.Hash([]byte(pw), fastHash, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.db.PutUser(ctx, &store.User{Name: name, Hash: h}, true); err != nil {
			t.Fatal(err)
		}
	}
	m := newMachine(t, defaultSpec)
	e.enrollAndApprove(t, m, "desk-1")
	setRoot(t, e, m.id, wire.RootPlan{Kind: wire.RootISCSI, Params: map[string]string{wire.ImageParam: "tiny", wire.PerUserParam: "true"}})
	alice, bob := roots.UserRootKey("alice"), roots.UserRootKey("bob")
	// First boot as bob, stopping at the credential (unsealing would
	// extend PCR 15 for the rest of the simulator's boot).
	if _, err := attestOnce(t, e.loginClient(t, &loginMachine{dev: m.dev, id: m.id, noUnseal: true}, typed("bob", bobPW))); err != nil {
		t.Fatalf("bob on desk-1: %v", err)
	}
	if !r.p.Serving(bob) || r.p.Serving(m.id) {
		t.Fatalf("after bob's login: serving bob %v, the machine's own root %v", r.p.Serving(bob), r.p.Serving(m.id))
	}
	res, err := attestOnce(t, e.loginClient(t, &loginMachine{dev: m.dev, id: m.id}, typed("alice", alicePW)))
	if err != nil {
		t.Fatalf("alice on desk-1: %v", err)
	}
	if r.p.Serving(bob) || !r.p.Has(bob) || e.lease(t, "bob") != nil {
		t.Fatalf("after alice's login: serving bob %v, bob's volume kept %v, lease %+v", r.p.Serving(bob), r.p.Has(bob), e.lease(t, "bob"))
	}
	p := res.Payload
	if p.Root.Params[wire.ISCSITarget] != rootiscsi.TargetIQN(alice) || !r.p.Serving(alice) {
		t.Fatalf("root plan = %+v; want alice's own target", p.Root)
	}
	url := "iscsi://" + string(p.Secrets[wire.SecretCHAPUser]) + "%" + string(p.Secrets[wire.SecretCHAPSecret]) +
		"@" + p.Root.Params[wire.ISCSIPortal] + "/" + p.Root.Params[wire.ISCSITarget] + "/0?target_user=" +
		string(p.Secrets[wire.SecretCHAPTargetUser]) + "&target_password=" + string(p.Secrets[wire.SecretCHAPTargetSecret])
	capacity := func() error {
		return exec.Command(testenv.LookTool(t, "iscsi-readcapacity16"), "-s", "-i", p.Root.Params[wire.ISCSIInitiator], url).Run()
	}
	if err := capacity(); err != nil {
		t.Fatalf("login to alice's root with the credential's secrets: %v", err)
	}
	if _, err := e.mgr.Revoke(ctx, "desk-1", "stolen"); err != nil {
		t.Fatal(err)
	}
	if r.p.Serving(alice) || e.lease(t, "alice") != nil {
		t.Fatalf("revoked machine keeps alice's root: serving %v, lease %+v", r.p.Serving(alice), e.lease(t, "alice"))
	}
	if err := capacity(); err == nil {
		t.Fatal("alice's credentials still log in after desk-1 was revoked")
	}
}

// TestMenuThenLogin: a machine with a per-user root and a boot menu (its
// image, labelled as the user login, and the local disk) shows the menu;
// choosing the image hands over to the login, and the right password
// releases the user's root.
func TestMenuThenLogin(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1")
	m := ms[0]
	_, err := e.db.UpdateMachine(context.Background(), m.id, func(mc *store.Machine) error {
		mc.Menu = &store.Menu{Images: []string{"desk"}, LocalDisk: true, Default: wire.ImageEntryID("desk"), Timeout: 3 * time.Second}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var shown []*wire.Menu
	con := typed("alice", alicePW)
	c := e.client(t, m.dev, func(c *agentattest.Config) {
		c.NoUnseal = m.noUnseal
		c.Hints.Firmware = "uefi"
		c.Choose = func(_ context.Context, mn *wire.Menu) (string, error) {
			shown = append(shown, mn)
			return mn.Default, nil
		}
		c.Login = func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
			return login.New(login.Console{In: con.in, Out: &con.out}).Run(ctx, first, send)
		}
	})
	res, err := attestOnce(t, c)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	if len(shown) != 1 || shown[0].Entry(wire.ImageEntryID("desk")).Label != "desk (user login)" || shown[0].Entry(wire.EntryLocalDiskID) == nil {
		t.Fatalf("menu shown = %+v, want desk (user login) and the local disk", shown)
	}
	if res.Payload.Root.Params[wire.ImageParam] != "desk" {
		t.Fatalf("root = %+v", res.Payload.Root)
	}
	if l := e.lease(t, "alice"); l == nil || l.MachineID != m.id {
		t.Fatalf("alice's lease = %+v, want held by %s", l, m.id)
	}
}

// TestPersonTimeIsNotAttemptTime: the agent's attempt timeout bounds the
// machine's side of an attestation, not a person typing: a login typed
// after longer than the attempt timeout still gets the root in one
// attempt (the server bounds the person with limits.person_timeout).
func TestPersonTimeIsNotAttemptTime(t *testing.T) {
	var logs testenv.Buffer
	e, ms := perUserEnv(t, &logs, "desk-1")
	const attemptTimeout = 4 * time.Second
	con := typed("alice", alicePW)
	c := e.client(t, ms[0].dev, func(c *agentattest.Config) {
		c.AttemptTimeout = attemptTimeout
		c.Login = func(ctx context.Context, first *wire.LoginPrompt, send func(context.Context, *wire.Login) (*wire.LoginPrompt, error)) error {
			select { // a person who takes their time
			case <-time.After(attemptTimeout * 3 / 2):
			case <-ctx.Done():
				return ctx.Err()
			}
			return login.New(login.Console{In: con.in, Out: &con.out}).Run(ctx, first, send)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if _, err := c.Attest(ctx, &out); err != nil {
		t.Fatalf("Attest = %v, want alice's root after a slow login\nconsole:\n%s%s", err, out.String(), con.out.String())
	}
	if strings.Contains(out.String(), "retrying") || strings.Contains(out.String(), "attestation server") {
		t.Errorf("the slow login cost an attempt:\n%s", out.String())
	}
	if l := e.lease(t, "alice"); l == nil || l.MachineID != ms[0].id {
		t.Fatalf("lease of alice = %+v, want desk-1's", l)
	}
}
