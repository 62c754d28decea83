package keyring

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/secrets"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
	"github.com/sealroot/sealroot/test/testenv"
)

// server is one sealroot server of a test cluster: its own etcd client
// and store handle, its own age identity.
type server struct {
	st  *store.Etcd
	box *secrets.Box
	kr  *Keyring
	log *testenv.Buffer
}

type cluster struct {
	etcd   *etcdtest.Cluster
	prefix string
}

func newCluster(t *testing.T) *cluster {
	return &cluster{etcd: etcdtest.Start(t, 1), prefix: etcdtest.Prefix(t)}
}

func (c *cluster) server(t *testing.T, name string) *server {
	t.Helper()
	st, err := store.NewEtcd(context.Background(), c.etcd.Client(), c.prefix, nil)
	if err != nil {
		t.Fatalf("NewEtcd: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), name+".age.key"))
	if err != nil {
		t.Fatal(err)
	}
	buf := &testenv.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: name, Output: buf, Level: hclog.Debug})
	s := &server{st: st, box: box, kr: New(st, box, logger), log: buf}
	if _, err := s.kr.Init(context.Background()); err != nil {
		t.Fatalf("%s Init: %v", name, err)
	}
	return s
}

func newTestMachine(t *testing.T, st store.Store, i int) string {
	t.Helper()
	m := &store.Machine{ID: fmt.Sprintf("%064x", i), Name: fmt.Sprintf("m%d", i), State: store.StatePending,
		EKPublic: []byte{1}, AKPublic: []byte{2}, Policy: store.PolicyPinned, FirstSeen: time.Now()}
	if err := st.CreateMachine(context.Background(), m); err != nil {
		t.Fatalf("CreateMachine: %v", err)
	}
	return m.ID
}

// decrypt reads a secret through s's own store handle and decrypts it
// with s's own identity.
func (s *server) decrypt(t *testing.T, id, name string) (string, error) {
	t.Helper()
	ct, err := s.st.Secret(context.Background(), id, name)
	if err != nil {
		t.Fatalf("Secret: %v", err)
	}
	pt, err := s.box.Decrypt(ct)
	return string(pt), err
}

func wantNoMatch(t *testing.T, err error, what string) {
	t.Helper()
	var nm *age.NoIdentityMatchError
	if !errors.As(err, &nm) {
		t.Errorf("%s: decrypt = %v, want age.NoIdentityMatchError", what, err)
	}
}

const (
	secretValue = "chap-s3cret-value"
	// laterValue is long and holds characters bech32 never uses (age
	// recipients in the log must not match it by chance: "v2" did).
	laterValue = "later-S3CRET-value-2"
)

// Server A holds a secret; server B joins (A runs join with B's
// recipient) and decrypts it from the shared store.
func TestJoinLetsNewServerDecrypt(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.server(t, "a")
	id := newTestMachine(t, a.st, 1)
	if err := a.kr.Seal(ctx, id, "chap", []byte(secretValue)); err != nil {
		t.Fatalf("Seal on A: %v", err)
	}
	b := c.server(t, "b")
	if !strings.Contains(b.log.String(), "not a member of the secrets keyring") {
		t.Errorf("B before joining did not warn it is not a member: %q", b.log.String())
	}
	_, err := b.decrypt(t, id, "chap")
	wantNoMatch(t, err, "B before joining")
	if _, err := b.kr.Join(ctx, b.kr.Recipient()); !errors.Is(err, ErrNotMember) {
		t.Errorf("join run on a non-member = %v, want ErrNotMember", err)
	}

	res, err := a.kr.Join(ctx, b.kr.Recipient())
	if err != nil {
		t.Fatalf("Join(B) on A: %v", err)
	}
	if res.Rewrapped != 1 || len(res.Keyring.Recipients) != 2 {
		t.Errorf("join result = %+v, want 1 re-wrapped, 2 members", res)
	}
	for _, s := range []*server{a, b} {
		if got, err := s.decrypt(t, id, "chap"); err != nil || got != secretValue {
			t.Errorf("after join: decrypt = %q, %v; want the value", got, err)
		}
	}
	// A secret set on B after joining is for both.
	if err := b.kr.Seal(ctx, id, "later", []byte(laterValue)); err != nil {
		t.Fatal(err)
	}
	if got, err := a.decrypt(t, id, "later"); err != nil || got != laterValue {
		t.Errorf("A decrypts B's secret = %q, %v", got, err)
	}
	for _, s := range []*server{a, b} {
		if strings.Contains(s.log.String(), secretValue) || strings.Contains(s.log.String(), laterValue) {
			t.Errorf("a secret value is in the log: %q", s.log.String())
		}
	}
}

// A removed server's identity decrypts none of the re-wrapped secrets nor
// any set afterwards.
func TestLeaveLocksOutRemovedServer(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.server(t, "a")
	b := c.server(t, "b")
	if _, err := a.kr.Join(ctx, b.kr.Recipient()); err != nil {
		t.Fatal(err)
	}
	id := newTestMachine(t, a.st, 1)
	if err := a.kr.Seal(ctx, id, "chap", []byte(secretValue)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.decrypt(t, id, "chap"); err != nil {
		t.Fatalf("B as a member: %v", err)
	}
	if _, err := a.kr.Leave(ctx, a.kr.Recipient()); !errors.Is(err, ErrSelf) {
		t.Errorf("Leave(self) = %v, want ErrSelf", err)
	}
	stranger := c.server(t, "stranger")
	if _, err := a.kr.Leave(ctx, stranger.kr.Recipient()); !errors.Is(err, ErrUnknownRecipient) {
		t.Errorf("Leave(non-member) = %v, want ErrUnknownRecipient", err)
	}
	res, err := a.kr.Leave(ctx, b.kr.Recipient())
	if err != nil {
		t.Fatalf("Leave(B): %v", err)
	}
	if res.Rewrapped != 1 || len(res.Keyring.Recipients) != 1 {
		t.Errorf("leave result = %+v, want 1 re-wrapped, 1 member", res)
	}
	_, err = b.decrypt(t, id, "chap")
	wantNoMatch(t, err, "B after leave, re-wrapped secret")
	if err := a.kr.Seal(ctx, id, "new", []byte("v3")); err != nil {
		t.Fatal(err)
	}
	_, err = b.decrypt(t, id, "new")
	wantNoMatch(t, err, "B after leave, new secret")
	if got, err := a.decrypt(t, id, "chap"); err != nil || got != secretValue {
		t.Errorf("A after leave = %q, %v", got, err)
	}
	// B's own writes after removal are sealed to the keyring without it.
	if err := b.kr.Seal(ctx, id, "fromb", []byte("v4")); err != nil {
		t.Fatal(err)
	}
	if got, err := a.decrypt(t, id, "fromb"); err != nil || got != "v4" {
		t.Errorf("A decrypts what removed B set = %q, %v", got, err)
	}
}

// A secret set on another server between the re-wrap's read and its
// write is not lost: the re-wrap loses (ErrSecretChanged), reads the new
// value and re-wraps that.
func TestRewrapKeepsConcurrentSet(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.server(t, "a")
	b := c.server(t, "b")
	if _, err := a.kr.Join(ctx, b.kr.Recipient()); err != nil {
		t.Fatal(err)
	}
	id := newTestMachine(t, a.st, 1)
	if err := a.kr.Seal(ctx, id, "chap", []byte("old")); err != nil {
		t.Fatal(err)
	}
	newcomer := c.server(t, "c")
	fired := false
	a.kr.beforeRewrap = func(machineID, name string) {
		if fired {
			return
		}
		fired = true
		if err := b.kr.Seal(ctx, machineID, name, []byte("new")); err != nil {
			t.Errorf("concurrent Seal on B: %v", err)
		}
	}
	res, err := a.kr.Join(ctx, newcomer.kr.Recipient())
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if !fired || res.Redone < 1 || res.Rewrapped != 1 {
		t.Errorf("join result = %+v (hook ran: %v), want the re-wrap redone once", res, fired)
	}
	for _, s := range []*server{a, b, newcomer} {
		if got, err := s.decrypt(t, id, "chap"); err != nil || got != "new" {
			t.Errorf("after the interleaving: decrypt = %q, %v; want the concurrent value", got, err)
		}
	}
}

// A secret encrypted to the keyring before a join and stored after it
// is refused by the store; Seal then encrypts again to the new list.
func TestSealAfterJoinIsForNewList(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.server(t, "a")
	b := c.server(t, "b")
	id := newTestMachine(t, a.st, 1)
	old, err := a.st.Keyring(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := secrets.EncryptTo(old.Recipients, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.kr.Join(ctx, b.kr.Recipient()); err != nil {
		t.Fatal(err)
	}
	if err := a.st.PutSecretSealed(ctx, id, "chap", ct, old.Version); !errors.Is(err, store.ErrKeyringChanged) {
		t.Fatalf("put of a ciphertext for the old list = %v, want ErrKeyringChanged", err)
	}
	if err := a.kr.Seal(ctx, id, "chap", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.decrypt(t, id, "chap"); err != nil || got != "v" {
		t.Errorf("B decrypts = %q, %v", got, err)
	}
}

func TestBadRecipientRefused(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.server(t, "a")
	before, _ := a.st.Keyring(ctx)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "age1... public key"},
		{"garbage", "hello", "age1... public key"},
		{"bad_checksum", "age1" + strings.Repeat("q", 58), "not an age X25519 recipient"},
		{"identity_pasted", id.String(), "never paste it"},
		{"ssh_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "age1... public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.kr.Join(ctx, tc.in)
			if !errors.Is(err, secrets.ErrBadRecipient) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Join(%q) = %v, want ErrBadRecipient mentioning %q", tc.name, err, tc.want)
			}
			if tc.name == "identity_pasted" && strings.Contains(err.Error(), id.String()) {
				t.Errorf("the error repeats the pasted identity")
			}
			if _, err := a.kr.Leave(ctx, tc.in); !errors.Is(err, secrets.ErrBadRecipient) {
				t.Errorf("Leave(%q) = %v, want ErrBadRecipient", tc.name, err)
			}
		})
	}
	if after, _ := a.st.Keyring(ctx); after.Version != before.Version {
		t.Errorf("bad recipients changed the keyring %d -> %d", before.Version, after.Version)
	}
}

// Secrets set on B without pause while A joins C: every secret ends with
// the last value set and every member, C included, decrypts it.
func TestJoinUnderConcurrentSets(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.server(t, "a")
	b := c.server(t, "b")
	if _, err := a.kr.Join(ctx, b.kr.Recipient()); err != nil {
		t.Fatal(err)
	}
	const machinesN, rounds = 3, 15
	var ids []string
	for i := range machinesN {
		id := newTestMachine(t, a.st, i+1)
		ids = append(ids, id)
		if err := a.kr.Seal(ctx, id, "s", []byte("v0")); err != nil {
			t.Fatal(err)
		}
	}
	newcomer := c.server(t, "c")
	done := make(chan error, 1)
	go func() {
		for r := 1; r <= rounds; r++ {
			for _, id := range ids {
				if err := b.kr.Seal(ctx, id, "s", []byte(fmt.Sprintf("v%d", r))); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	if _, err := a.kr.Join(ctx, newcomer.kr.Recipient()); err != nil {
		t.Fatalf("Join under concurrent sets: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("concurrent Seal: %v", err)
	}
	want := fmt.Sprintf("v%d", rounds)
	for _, id := range ids {
		for _, s := range []*server{a, b, newcomer} {
			if got, err := s.decrypt(t, id, "s"); err != nil || got != want {
				t.Errorf("machine %s: decrypt = %q, %v; want %q", id[:8], got, err, want)
			}
		}
	}
}
