package users

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// testParams are cheap parameters for tests.
var testParams = Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	h, err := Hash([]byte("correct horse"), testParams, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q does not carry its parameters", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}
	if ok, err := Verify(h, []byte("correct horse")); !ok || err != nil {
		t.Errorf("right password: %v, %v", ok, err)
	}
	for _, wrong := range []string{"correct hors", "correct horse ", "", strings.Repeat("x", MaxPassword+1)} {
		if ok, err := Verify(h, []byte(wrong)); ok || err != nil {
			t.Errorf("wrong password %.20q: %v, %v", wrong, ok, err)
		}
	}
	h2, _ := Hash([]byte("correct horse"), testParams, nil)
	if h2 == h {
		t.Error("two hashes of one password are equal: no fresh salt")
	}
	if !NeedsRehash(h, DefaultParams) || NeedsRehash(h, testParams) {
		t.Error("NeedsRehash does not follow the stored parameters")
	}
	def, err := Hash([]byte("x"), DefaultParams, nil)
	if err != nil || !strings.HasPrefix(def, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Errorf("default hash %q, %v", def, err)
	}
}

func TestHashRefuses(t *testing.T) {
	if _, err := Hash(nil, testParams, nil); !errors.Is(err, ErrBadPassword) {
		t.Errorf("empty password: %v", err)
	}
	if _, err := Hash(make([]byte, MaxPassword+1), testParams, nil); !errors.Is(err, ErrBadPassword) {
		t.Errorf("long password: %v", err)
	}
	if _, err := Hash([]byte("x"), Params{Memory: maxMemory + 1, Time: 1, Threads: 1, KeyLen: 32}, nil); !errors.Is(err, ErrBadHash) {
		t.Errorf("huge memory: %v", err)
	}
	good, _ := Hash([]byte("pw"), testParams, nil)
	for _, bad := range []string{
		"", "plain", strings.Replace(good, "argon2id", "argon2i", 1), strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=64,", "m=9999999,", 1), // over the memory bound
		strings.Replace(good, "t=1,", "t=99,", 1),
		strings.Replace(good, "p=1$", "p=0$", 1),
		good + "$", good[:len(good)-30],
	} {
		if ok, err := Verify(bad, []byte("pw")); ok || !errors.Is(err, ErrBadHash) {
			t.Errorf("Verify(%q): %v, %v; want ErrBadHash", bad, ok, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := Hash([]byte("pw"), testParams, nil)
	f.Add(good)
	f.Add("$argon2id$v=19$m=1048576,t=16,p=16$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=0,t=0,p=0$$")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := Parse(s)
		if err != nil {
			return
		}
		if p.Memory > maxMemory || p.Time > maxTime || p.Threads > maxThreads || len(key) > maxKeyLen || len(salt) > maxSaltLen {
			t.Fatalf("Parse accepted out-of-bounds %+v", p)
		}
	})
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"alice", "_svc", "bob.smith", "a-1"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Alice", "1x", "-x", ".x", "a/b", "a b", "x.", strings.Repeat("a", 33), "é"} {
		if err := CheckName(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(LimiterConfig{Free: 2, Base: time.Second, Max: 8 * time.Second, MaxKeys: 3, Now: func() time.Time { return now }})
	for i := 0; i < 2; i++ {
		l.Fail("user:a")
		if w := l.Wait("user:a"); w != 0 {
			t.Fatalf("after %d failures wait %v, want none", i+1, w)
		}
	}
	var got []time.Duration
	for i := 0; i < 6; i++ {
		l.Fail("user:a")
		got = append(got, l.Wait("user:a"))
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", got, want)
		}
	}
	if l.Wait("user:b") != 0 || l.Wait("machine:x") != 0 {
		t.Error("other keys delayed")
	}
	now = now.Add(8 * time.Second)
	if w := l.Wait("user:a"); w != 0 {
		t.Errorf("after the delay: wait %v", w)
	}
	l.Succeed("user:a")
	l.Fail("user:a")
	if w := l.Wait("user:a"); w != 0 {
		t.Errorf("a success did not clear the failures: wait %v", w)
	}
	for _, k := range []string{"k1", "k2", "k3", "k4", "k5"} {
		now = now.Add(time.Millisecond)
		l.Fail(k)
	}
	if n := len(l.keys); n > 3 {
		t.Errorf("limiter remembers %d keys, bound 3", n)
	}
}

// BenchmarkVerifyDefault is the cost of one login check (and of one
// guess) with DefaultParams.
func BenchmarkVerifyDefault(b *testing.B) {
	h, err := Hash([]byte("pw"), DefaultParams, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Verify(h, []byte("pw"))
	}
}
