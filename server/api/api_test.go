package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/machines"
	"github.com/sealroot/sealroot/server/store"
)

const (
	idA = "aaaaaaaa11111111111111111111111111111111111111111111111111111111"
	idB = "aaaaaaaa22222222222222222222222222222222222222222222222222222222"
	idC = "cccccccc33333333333333333333333333333333333333333333333333333333"
)

func testMachines() []*store.Machine {
	reported := &store.BootState{PCRs: map[int][]byte{0: {1, 2, 3}, 7: {4, 5, 6}}}
	return []*store.Machine{
		{ID: idA, Name: "alpha", State: store.StatePending, Policy: store.PolicyPinned, Reported: reported},
		{ID: idB, Name: "beta", State: store.StateApproved, Policy: store.PolicyPinned, Approved: reported},
		{ID: idC, Name: "gamma", State: store.StateNeedsReapproval, Policy: store.PolicyPinned,
			Reported: reported, Diff: "PCR 4: boot loader changed"},
	}
}

// newTestClient serves a fresh machine manager and returns a client of it.
func newTestClient(t *testing.T) (*apitest.Service, *client.Client, string) {
	t.Helper()
	svc := apitest.NewService(t, testMachines()...)
	path := apitest.Serve(t, svc, api.WithActorFunc(machines.WithActor))
	return svc, client.New(path), path
}

func TestRoutes(t *testing.T) {
	svc, c, _ := newTestClient(t)
	ctx := context.Background()

	ms, err := c.Machines(ctx)
	if err != nil || len(ms) != 3 || ms[0].ID != idA {
		t.Fatalf("Machines = %v, %v; want 3 machines, first %s", ms, err, idA)
	}
	m, err := c.Machine(ctx, "gamma")
	if err != nil || m.ID != idC || m.Diff == "" {
		t.Fatalf("Machine(gamma) = %+v, %v", m, err)
	}
	m, err = c.Approve(ctx, idA[:12], api.ApproveOptions{Name: "web1", Policy: api.PolicyIdentityOnly})
	if err != nil || m.State != api.StateApproved || m.Name != "web1" || m.Policy != api.PolicyIdentityOnly {
		t.Fatalf("Approve = %+v, %v", m, err)
	}
	if m.Approved == nil || !bytes.Equal(m.Approved.PCRs[7], []byte{4, 5, 6}) {
		t.Errorf("Approve pinned %+v, want the reported PCRs", m.Approved)
	}
	m, err = c.Revoke(ctx, "beta", "stolen")
	if err != nil || m.State != api.StateRevoked || m.Reason != "stolen" {
		t.Fatalf("Revoke = %+v, %v", m, err)
	}
	if err := c.SetSecret(ctx, "web1", "disk.key", []byte("s3cret\x00\n")); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	if v, _ := svc.Secret(idA, "disk.key"); string(v) != "s3cret\x00\n" {
		t.Errorf("stored secret = %q, want the exact bytes sent", v)
	}
	if err := c.SetSecret(ctx, "web1", "empty", nil); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("SetSecret(empty value) = %v, want ErrInvalid", err)
	}
	if err := c.SetSecret(ctx, "web1", "other", []byte("x")); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	names, err := c.SecretNames(ctx, "web1")
	if err != nil || !slices.Equal(names, []string{"disk.key", "other"}) {
		t.Fatalf("SecretNames = %q, %v", names, err)
	}
	if err := c.DeleteSecret(ctx, "web1", "disk.key"); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	if names, _ := c.SecretNames(ctx, "web1"); !slices.Equal(names, []string{"other"}) {
		t.Errorf("after DeleteSecret, names = %q", names)
	}
	if err := c.Forget(ctx, "web1"); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if _, err := c.Machine(ctx, idA); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Machine after Forget: err = %v, want ErrNotFound", err)
	}
	var actions []string
	for _, e := range svc.Audit() {
		actions = append(actions, e.Action+" "+e.Outcome)
		if e.Actor != "operator:0" {
			t.Errorf("audit entry %+v: actor %q, want operator:0 (the peer)", e, e.Actor)
		}
	}
	want := []string{"approve ok", "revoke ok", "secret-set ok", "secret-set refused", "secret-set ok",
		"secret-list ok", "secret-delete ok", "secret-list ok", "forget ok"}
	if !slices.Equal(actions, want) {
		t.Errorf("audit = %q, want %q", actions, want)
	}
}

func TestEmptyLists(t *testing.T) {
	svc := apitest.NewService(t, testMachines()[0])
	c := client.New(apitest.Serve(t, svc))
	names, err := c.SecretNames(context.Background(), "alpha")
	if err != nil || names == nil || len(names) != 0 {
		t.Errorf("SecretNames = %#v, %v; want an empty, non-nil list", names, err)
	}
	empty := client.New(apitest.Serve(t, apitest.NewService(t)))
	ms, err := empty.Machines(context.Background())
	if err != nil || ms == nil || len(ms) != 0 {
		t.Errorf("Machines = %#v, %v; want an empty, non-nil list", ms, err)
	}
}

// failingService fails every call with an error no sentinel matches.
type failingService struct{ api.Service }

func (failingService) Machine(context.Context, string) (*api.Machine, error) {
	return nil, errors.New("bolt: database not open")
}

func TestErrorRoundTrip(t *testing.T) {
	_, c, _ := newTestClient(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		call    func() error
		want    error
		wantMsg string
	}{
		{"not_found", func() error { _, err := c.Machine(ctx, "nope"); return err },
			api.ErrNotFound, `machine "nope": not found`},
		{"ambiguous_prefix", func() error { _, err := c.Machine(ctx, "aaaaaaaa"); return err },
			api.ErrAmbiguous, `machine "aaaaaaaa": ambiguous: matches aaaaaaaa1111, aaaaaaaa2222`},
		{"conflict_approve_approved", func() error { _, err := c.Approve(ctx, "beta", api.ApproveOptions{}); return err },
			api.ErrConflict, "machine aaaaaaaa2222 is approved; only pending or needs-reapproval machines can be approved"},
		{"invalid_secret_name", func() error { return c.SetSecret(ctx, "alpha", "a b", []byte("x")) },
			api.ErrInvalid, `secret name "a b": want 1-64 of [A-Za-z0-9._-]`},
		{"invalid_policy", func() error {
			_, err := c.Approve(ctx, "alpha", api.ApproveOptions{Policy: "trust-me"})
			return err
		}, api.ErrInvalid, `unknown policy "trust-me"`},
		{"secret_not_found", func() error { return c.DeleteSecret(ctx, "alpha", "nope") },
			api.ErrNotFound, `secret "nope"`},
		{"ref_with_slash", func() error { _, err := c.Machine(ctx, "a/b"); return err },
			api.ErrNotFound, `machine "a/b": not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to contain the server's message %q", err, tt.wantMsg)
			}
		})
	}
	t.Run("internal", func(t *testing.T) {
		c := client.New(apitest.Serve(t, failingService{}))
		_, err := c.Machine(ctx, "alpha")
		var apiErr *api.Error
		if !errors.As(err, &apiErr) || apiErr.Code != api.CodeInternal || err.Error() != "bolt: database not open" {
			t.Fatalf("err = %#v, want *api.Error code internal with the server's message", err)
		}
		for _, s := range []error{api.ErrNotFound, api.ErrAmbiguous, api.ErrConflict, api.ErrInvalid, api.ErrForbidden} {
			if errors.Is(err, s) {
				t.Errorf("internal error matches sentinel %v", s)
			}
		}
	})
}

func TestStatusCodes(t *testing.T) {
	_, _, path := newTestClient(t)
	hc := unixHTTPClient(path)
	tests := []struct {
		name, method, url, body string
		wantStatus              int
		wantCode                string
	}{
		{"get_machine", "GET", "/v1/machines/alpha", "", 200, ""},
		{"not_found_404", "GET", "/v1/machines/nope", "", 404, api.CodeNotFound},
		{"ambiguous_409", "GET", "/v1/machines/aaaaaaaa", "", 409, api.CodeAmbiguous},
		{"conflict_409", "POST", "/v1/machines/beta/approve", "{}", 409, api.CodeConflict},
		{"bad_json_400", "POST", "/v1/machines/alpha/approve", "{", 400, api.CodeInvalid},
		{"unknown_field_400", "POST", "/v1/machines/alpha/approve", `{"nmae":"x"}`, 400, api.CodeInvalid},
		{"trailing_data_400", "POST", "/v1/machines/alpha/revoke", `{"reason":"x"} {}`, 400, api.CodeInvalid},
		{"huge_json_400", "POST", "/v1/machines/alpha/revoke", `{"reason":"` + strings.Repeat("x", 20<<10) + `"}`, 400, api.CodeInvalid},
		{"empty_body_approve", "POST", "/v1/machines/alpha/approve", "", 200, ""},
		{"forget_204", "DELETE", "/v1/machines/gamma", "", 204, ""},
		{"wrong_method_405", "PATCH", "/v1/machines/alpha", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://sealroot"+tt.url, strings.NewReader(tt.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.url, resp.StatusCode, tt.wantStatus)
			}
			if tt.wantCode != "" {
				var e api.Error
				if err := jsonDecode(resp.Body, &e); err != nil || e.Code != tt.wantCode || e.Message == "" {
					t.Errorf("body = %+v, %v; want code %q and a message", e, err, tt.wantCode)
				}
			}
		})
	}
}

func TestSecretSizeLimit(t *testing.T) {
	svc, c, path := newTestClient(t)
	ctx := context.Background()
	max := bytes.Repeat([]byte{'k'}, api.MaxSecretSize)
	if err := c.SetSecret(ctx, "alpha", "big", max); err != nil {
		t.Fatalf("SetSecret(%d bytes) = %v, want success", len(max), err)
	}
	err := c.SetSecret(ctx, "alpha", "big", append(max, 'x'))
	if !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("SetSecret(%d bytes) = %v, want ErrInvalid", len(max)+1, err)
	}
	if v, _ := svc.Secret(idA, "big"); len(v) != api.MaxSecretSize {
		t.Errorf("stored secret is %d bytes after the refused write, want %d", len(v), api.MaxSecretSize)
	}
	req, _ := http.NewRequest("PUT", "http://sealroot/v1/machines/alpha/secrets/big", bytes.NewReader(append(max, 'x')))
	resp, err := unixHTTPClient(path).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", resp.StatusCode)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	svc := apitest.NewService(t, testMachines()...)
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace})
	c := client.New(serveWithLogger(t, svc, logger))
	const secret = "correct-horse-battery-staple"
	if err := c.SetSecret(context.Background(), "alpha", "pw", []byte(secret)); err != nil {
		t.Fatal(err)
	}
	c.SetSecret(context.Background(), "nope", "pw", []byte(secret))
	if logs.Len() == 0 {
		t.Fatal("no request was logged; the check below would be vacuous")
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("log contains the secret value:\n%s", logs.String())
	}
}

func TestServeShutdown(t *testing.T) {
	dir := shortTempDir(t)
	path := dir + "/admin.sock"
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &api.Server{Handler: api.NewHandler(apitest.NewService(t, testMachines()...), nil)}
	go func() { done <- srv.Serve(ctx, ln) }()
	if _, err := client.New(path).Machines(ctx); err != nil {
		t.Fatalf("Machines: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	_, err = client.New(path).Machines(context.Background())
	want := fmt.Sprintf("cannot reach sealroot at %s: is \"sealroot serve\" running?", path)
	var ue *client.UnreachableError
	if !errors.As(err, &ue) || err.Error() != want {
		t.Errorf("after shutdown: err = %v, want %q", err, want)
	}
}

// blockingService blocks Machines until release is closed.
type blockingService struct {
	api.Service
	started chan struct{}
	release chan struct{}
}

func (b blockingService) Machines(ctx context.Context) ([]*api.Machine, error) {
	close(b.started)
	<-b.release
	return machines.ViewMachines(testMachines()), nil
}

func TestServeShutdownWaitsForRequests(t *testing.T) {
	path := shortTempDir(t) + "/admin.sock"
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	svc := blockingService{started: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- (&api.Server{Handler: api.NewHandler(svc, nil)}).Serve(ctx, ln) }()
	got := make(chan error, 1)
	go func() {
		ms, err := client.New(path).Machines(context.Background())
		if err == nil && len(ms) != 3 {
			err = fmt.Errorf("got %d machines, want 3", len(ms))
		}
		got <- err
	}()
	<-svc.started
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(svc.release)
	if err := <-got; err != nil {
		t.Errorf("in-flight request during shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after shutdown: %v, want it removed", err)
	}
}
