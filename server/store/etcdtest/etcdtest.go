// Package etcdtest runs real etcd members inside a test (etcd's own
// server, embedded), on loopback with fresh ports and data directories, so
// the etcd store is tested against etcd itself.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// startTimeout bounds a member's start (a cluster elects a leader first).
const startTimeout = 60 * time.Second

// Cluster is a running etcd cluster of one or more members.
type Cluster struct {
	t       testing.TB
	Members []*embed.Etcd
	cfgs    []*embed.Config
	stops   []func()                    // each member's Close, once
	ca      *CA                         // nil for plain http
	do      func(fn func() error) error // where the members listen (StartIn)
	// Endpoints are the members' client URLs.
	Endpoints []string
}

// Start starts an etcd cluster of n members (1 or 3) on loopback; they
// are stopped at the end of the test.
func Start(t testing.TB, n int) *Cluster { return StartOn(t, n, "127.0.0.1") }

// StartTLS starts an etcd cluster of n members as Start does, serving
// clients over TLS only (https:// endpoints) with certificates from ca,
// and requiring a client certificate signed by ca (etcd's
// --client-cert-auth with --trusted-ca-file). Client connects with a
// certificate named root; other clients bring their own from ca.Issue
// (with etcd authentication on, etcd takes a certificate's common name for
// the user).
func StartTLS(t testing.TB, n int, ca *CA) *Cluster {
	t.Helper()
	return StartOnTLS(t, n, "127.0.0.1", ca)
}

// StartOnTLS is StartTLS with every member listening on ip, as StartOn.
func StartOnTLS(t testing.TB, n int, ip string, ca *CA) *Cluster {
	t.Helper()
	return startWith(t, n, ip, func(fn func() error) error { return fn() }, ca)
}

// StartInTLS is StartIn with client TLS from ca, as StartTLS.
func StartInTLS(t testing.TB, n int, do func(fn func() error) error, ca *CA) *Cluster {
	t.Helper()
	return startWith(t, n, "127.0.0.1", do, ca)
}

// StartOn starts an etcd cluster of n members as Start does, every member
// listening on ip (an address of this host the test owns: the host end of
// a veth into a test's network namespace, say), so that processes in
// other network namespaces reach it.
func StartOn(t testing.TB, n int, ip string) *Cluster {
	t.Helper()
	return start(t, n, ip, func(fn func() error) error { return fn() })
}

// StartIn is Start with the members' sockets opened inside do, which
// runs fn where they must listen: a network namespace's Do, say, so that
// servers in that namespace reach the members on its loopback (the
// members' listeners stay there; the client URLs name its 127.0.0.1).
func StartIn(t testing.TB, n int, do func(fn func() error) error) *Cluster {
	t.Helper()
	return start(t, n, "127.0.0.1", do)
}

// start starts n members listening on ip, their sockets opened inside do.
func start(t testing.TB, n int, ip string, do func(fn func() error) error) *Cluster {
	t.Helper()
	return startWith(t, n, ip, do, nil)
}

// startWith is start, with client TLS from ca unless it is nil.
func startWith(t testing.TB, n int, ip string, do func(fn func() error) error, ca *CA) *Cluster {
	t.Helper()
	clientScheme := "http://"
	if ca != nil {
		clientScheme = "https://"
	}
	var addrs []string
	if err := do(func() (err error) { addrs, err = freeAddrs(ip, 2*n); return err }); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	type member struct{ name, peer, client string }
	ms := make([]member, n)
	var initial []string
	for i := range ms {
		ms[i] = member{fmt.Sprintf("m%d", i), "http://" + addrs[2*i], clientScheme + addrs[2*i+1]}
		initial = append(initial, ms[i].name+"="+ms[i].peer)
	}
	c := &Cluster{t: t, ca: ca, do: do}
	token := fmt.Sprintf("sealroot-test-%d", time.Now().UnixNano())
	cfgs := make([]*embed.Config, n)
	for i, m := range ms {
		cfg := embed.NewConfig()
		cfg.Name = m.name
		cfg.Dir = t.TempDir()
		pu, cu := mustURL(t, m.peer), mustURL(t, m.client)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = token
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		if ca != nil {
			certFile, keyFile := ca.Issue(t, m.name, true, ip)
			cfg.ClientTLSInfo = transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: ca.File, ClientCertAuth: true}
		}
		cfgs[i] = cfg
		c.Endpoints = append(c.Endpoints, m.client)
	}
	// Members of a new cluster wait for each other while starting: start
	// them all at once, then wait until each is ready.
	c.cfgs = cfgs
	c.Members = make([]*embed.Etcd, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() {
			errs[i] = do(func() (err error) { c.Members[i], err = embed.StartEtcd(cfg); return err })
		})
	}
	wg.Wait()
	for i, e := range c.Members {
		if errs[i] != nil {
			t.Fatalf("start etcd member %d: %v", i, errs[i])
		}
		c.stops = append(c.stops, sync.OnceFunc(e.Close))
		t.Cleanup(c.stops[i])
	}
	for _, e := range c.Members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			t.Fatalf("etcd member: %v", err)
		case <-time.After(startTimeout):
			t.Fatalf("etcd member not ready after %v", startTimeout)
		}
	}
	return c
}

// Client returns a client of the whole cluster, closed at the end of the
// test. On a TLS cluster its certificate is named root: etcd's root user
// once authentication is on. It dials where the members listen (inside
// StartIn's do).
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cfg := clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.dial)}}
	if c.ca != nil {
		certFile, keyFile := c.ca.Issue(c.t, "root", false)
		tc, err := (transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: c.ca.File}).ClientConfig()
		if err != nil {
			c.t.Fatalf("etcd client TLS: %v", err)
		}
		cfg.TLS = tc
	}
	cl, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatalf("etcd client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// dial connects to a member's address inside c.do.
func (c *Cluster) dial(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	err := c.do(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

// Stop stops member i.
func (c *Cluster) Stop(i int) { c.stops[i]() }

// Restart starts member i again, stopped by Stop, on its data directory
// and addresses: it rejoins the cluster with what it had. It returns
// once the member is serving (with a quorum, once it caught up).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("restart etcd member %d: %v", i, err)
	}
	c.Members[i], c.stops[i] = e, sync.OnceFunc(e.Close)
	c.t.Cleanup(c.stops[i])
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		c.t.Fatalf("etcd member %d: %v", i, err)
	case <-time.After(startTimeout):
		c.t.Fatalf("etcd member %d not ready after %v", i, startTimeout)
	}
}

// Prefix returns a key prefix unique to the test.
func Prefix(t testing.TB) string { return "/sealroot-test/" + t.Name() + "/" }

// Ready waits until the cluster answers a read.
func (c *Cluster) Ready(ctx context.Context, cl *clientv3.Client) error {
	_, err := cl.Get(ctx, "health")
	return err
}

// freeAddrs returns n distinct free addresses on ip (held open together
// while they are picked).
func freeAddrs(ip string, n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

func mustURL(t testing.TB, s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}
