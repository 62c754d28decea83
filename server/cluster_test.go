package server

import (
	"context"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/store/etcdtest"
)

// `sealroot status` lists the servers sharing the store: registered ones
// up, and a server that only machines' homes name (stopped) down, with
// the roots it keeps.
func TestClusterStatusShowsHomeDown(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	st, err := store.NewEtcd(ctx, c.Client(), etcdtest.Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- st.RegisterServer(rctx, store.ServerInfo{Name: "boot-a", TunnelEndpoint: "192.0.2.1:51820"})
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	a, b := pad("aa"), pad("bb")
	for id, home := range map[string]string{a: "boot-a", b: "boot-b"} {
		if got, err := st.ClaimHome(ctx, id, home); err != nil || got != home {
			t.Fatalf("ClaimHome = %q, %v", got, err)
		}
	}
	if got, _ := st.ClaimHome(ctx, a, "boot-b"); got != "boot-a" {
		t.Fatalf("second claim moved the home to %q, want boot-a kept", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, err := ClusterStatus(ctx, st, "boot-a")
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Servers) == 2 && cs.Servers[0].Up && cs.Servers[0].Name == "boot-a" && cs.Servers[0].Homed == 1 &&
			!cs.Servers[1].Up && cs.Servers[1].Name == "boot-b" && cs.Servers[1].Homed == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status = %+v, want boot-a up and boot-b down, one root each", cs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pad(s string) string {
	for len(s) < 64 {
		s += "0"
	}
	return s
}

// Two servers built as `sealroot serve` builds them, on one etcd (store
// section with endpoints, prefix and server_name): each registers itself,
// and `sealroot status` on B lists both up; once A stops, B's status
// shows A down with the root it keeps.
func TestServersShareEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	prefix := etcdtest.Prefix(t)
	a := startMember(t, c, prefix, "boot-a", "")
	b := startMember(t, c, prefix, "boot-b", "")
	statusB := func() *api.ClusterStatus {
		st, err := b.admin.Status(context.Background())
		if err != nil {
			t.Fatalf("status of boot-b: %v", err)
		}
		return st.Cluster
	}
	wait := func(what string, ok func(*api.ClusterStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			cs := statusB()
			if cs != nil && ok(cs) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("B's cluster status = %+v, want %s", cs, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("both servers up", func(cs *api.ClusterStatus) bool {
		return cs.Self == "boot-b" && len(cs.Servers) == 2 && cs.Servers[0].Up && cs.Servers[1].Up
	})
	st, err := store.NewEtcd(context.Background(), c.Client(), prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimHome(context.Background(), pad("cc"), "boot-a"); err != nil {
		t.Fatal(err)
	}
	a.stop()
	wait("boot-a down keeping one root", func(cs *api.ClusterStatus) bool {
		return len(cs.Servers) == 2 && cs.Servers[0].Name == "boot-a" && !cs.Servers[0].Up && cs.Servers[0].Homed == 1 && cs.Servers[1].Up
	})
}
