package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The cluster keys (etcd only), beside those of etcdKeys:
//
//	<p>servers/<name>            -> JSON ServerInfo (leased: gone when the server is)
//	<p>homes/<machine id>        -> home server name
//	<p>homereq/<home>/<id>       -> JSON HomeRequest (leased)
//	<p>homeans/<machine id>/<id> -> JSON HomeAnswer (leased)
func (k etcdKeys) servers() string                 { return k.prefix + "servers/" }
func (k etcdKeys) server(name string) string       { return k.servers() + name }
func (k etcdKeys) homes() string                   { return k.prefix + "homes/" }
func (k etcdKeys) home(id string) string           { return k.homes() + id }
func (k etcdKeys) homeRequests(home string) string { return k.prefix + "homereq/" + home + "/" }
func (k etcdKeys) homeAnswer(id, req string) string {
	return k.prefix + "homeans/" + id + "/" + req
}

// RegistrationTTL is how long a server's registration outlives its last
// keep-alive: how soon the cluster sees that a server is down.
const RegistrationTTL = 5 * time.Second

// homeMessageTTL is how long a home request or answer stays in the store
// if nobody deletes it.
const homeMessageTTL = 60 * time.Second

func validServerName(name string) error {
	if name == "" || len(name) > 253 || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid server name %q", name)
	}
	return nil
}

// RegisterServer implements ClusterStore with a key on an etcd lease of
// RegistrationTTL kept alive while ctx lasts; when the keep-alive breaks
// (no quorum), it registers again.
func (s *Etcd) RegisterServer(ctx context.Context, info ServerInfo) error {
	if err := validServerName(info.Name); err != nil {
		return err
	}
	buf, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("register server: %w", err)
	}
	for {
		if err := s.registerOnce(ctx, info.Name, buf); err != nil && ctx.Err() == nil {
			s.logger.Warn("server registration lapsed, registering again", "error", err)
		}
		if !sleepCtx(ctx, time.Second) {
			return nil
		}
	}
}

func (s *Etcd) registerOnce(ctx context.Context, name string, buf []byte) error {
	lease, err := s.client.Grant(ctx, int64(RegistrationTTL/time.Second))
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	defer func() {
		// A clean stop removes the registration at once.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		s.client.Revoke(rctx, lease.ID)
	}()
	if _, err := s.client.Put(ctx, s.keys.server(name), string(buf), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("put registration: %w", err)
	}
	alive, err := s.client.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	for range alive {
	}
	return errors.New("keep-alive ended")
}

// Servers implements ClusterStore.
func (s *Etcd) Servers(ctx context.Context) ([]ServerInfo, error) {
	resp, err := s.client.Get(ctx, s.keys.servers(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	out := make([]ServerInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var si ServerInfo
		if err := json.Unmarshal(kv.Value, &si); err != nil {
			return nil, fmt.Errorf("server %s: %w: %v", kv.Key, ErrCorrupt, err)
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ClaimHome implements ClusterStore: the first claim wins, in one
// transaction.
func (s *Etcd) ClaimHome(ctx context.Context, machineID, server string) (string, error) {
	if err := checkID(machineID); err != nil {
		return "", err
	}
	if err := validServerName(server); err != nil {
		return "", err
	}
	var home string
	err := s.txn(ctx, func(tx *etcdTx) error {
		v, ok, err := tx.get(s.keys.home(machineID))
		if err != nil {
			return err
		}
		if ok {
			home = string(v)
			return nil
		}
		home = server
		tx.put(s.keys.home(machineID), []byte(server))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("claim home of %.12s: %w", machineID, err)
	}
	return home, nil
}

// Homes implements ClusterStore.
func (s *Etcd) Homes(ctx context.Context) (map[string]string, error) {
	resp, err := s.client.Get(ctx, s.keys.homes(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("homes: %w", err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), s.keys.homes())] = string(kv.Value)
	}
	return out, nil
}

// ForgetHome implements ClusterStore: the home goes only if, in the same
// transaction, the machine has no record.
func (s *Etcd) ForgetHome(ctx context.Context, machineID string) error {
	if err := checkID(machineID); err != nil {
		return err
	}
	return s.txn(ctx, func(tx *etcdTx) error {
		if _, ok, err := tx.get(s.keys.machine(machineID)); err != nil || ok {
			return err
		}
		if _, ok, err := tx.get(s.keys.home(machineID)); err != nil || !ok {
			return err
		}
		tx.del(s.keys.home(machineID))
		return nil
	})
}

// AskHome implements ClusterStore. The request and the answer are leased
// keys: neither outlives homeMessageTTL, and the answer, which holds the
// boot's root secrets (age-encrypted), is deleted as soon as it is read.
func (s *Etcd) AskHome(ctx context.Context, req HomeRequest) (*HomeAnswer, error) {
	if err := validServerName(req.Home); err != nil {
		return nil, err
	}
	if err := checkID(req.MachineID); err != nil {
		return nil, err
	}
	up, err := s.client.Get(ctx, s.keys.server(req.Home), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("ask home %s: %w", req.Home, err)
	}
	if up.Count == 0 {
		return nil, fmt.Errorf("%s is not registered: %w", req.Home, ErrHomeDown)
	}
	id := make([]byte, 16)
	rand.Read(id)
	req.ID = hex.EncodeToString(id)
	buf, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("ask home: %w", err)
	}
	lease, err := s.client.Grant(ctx, int64(homeMessageTTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("ask home %s: grant lease: %w", req.Home, err)
	}
	reqKey := s.keys.homeRequests(req.Home) + req.ID
	put, err := s.client.Put(ctx, reqKey, string(buf), clientv3.WithLease(lease.ID))
	if err != nil {
		return nil, fmt.Errorf("ask home %s: %w", req.Home, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		s.client.Delete(dctx, reqKey)
	}()
	ansKey := s.keys.homeAnswer(req.MachineID, req.ID)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range s.client.Watch(wctx, ansKey, clientv3.WithRev(put.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return nil, fmt.Errorf("ask home %s: watch answer: %w", req.Home, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				continue
			}
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			s.client.Delete(dctx, ansKey)
			dcancel()
			var a HomeAnswer
			if err := json.Unmarshal(ev.Kv.Value, &a); err != nil {
				return nil, fmt.Errorf("ask home %s: answer: %w: %v", req.Home, ErrCorrupt, err)
			}
			return &a, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s did not answer: %w (%v)", req.Home, ErrHomeDown, err)
	}
	return nil, fmt.Errorf("ask home %s: watch ended", req.Home)
}

// ServeHome implements ClusterStore with a watch on name's requests, from
// now: a request sent while the server was down has timed out already.
func (s *Etcd) ServeHome(ctx context.Context, name string, fn func(context.Context, HomeRequest) HomeAnswer) error {
	if err := validServerName(name); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	prefix := s.keys.homeRequests(name)
	var next int64
	for ctx.Err() == nil {
		if next == 0 {
			rev, err := s.currentRevision(ctx)
			if err != nil {
				s.logger.Warn("home requests: cannot read the store's revision", "error", err)
				sleepCtx(ctx, watchRetry)
				continue
			}
			next = rev + 1
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range s.client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(next)) {
			if wr.CompactRevision != 0 {
				next = 0
				break
			}
			if err := wr.Err(); err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("home requests: watch cut, resuming", "error", err)
				}
				break
			}
			for _, ev := range wr.Events {
				next = ev.Kv.ModRevision + 1
				if ev.Type == clientv3.EventTypeDelete || ev.IsModify() {
					continue
				}
				var req HomeRequest
				if err := json.Unmarshal(ev.Kv.Value, &req); err != nil || req.ID == "" || checkID(req.MachineID) != nil {
					s.logger.Error("home requests: undecodable request dropped", "key", string(ev.Kv.Key))
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.answerHome(ctx, req, fn(ctx, req))
				}()
			}
		}
		cancel()
		sleepCtx(ctx, watchRetry)
	}
	return nil
}

func (s *Etcd) answerHome(ctx context.Context, req HomeRequest, a HomeAnswer) {
	buf, err := json.Marshal(a)
	if err != nil {
		s.logger.Error("home answer: encode", "machine", req.MachineID, "error", err)
		return
	}
	lease, err := s.client.Grant(ctx, int64(homeMessageTTL/time.Second))
	if err != nil {
		s.logger.Error("home answer: grant lease", "machine", req.MachineID, "error", err)
		return
	}
	if _, err := s.client.Put(ctx, s.keys.homeAnswer(req.MachineID, req.ID), string(buf), clientv3.WithLease(lease.ID)); err != nil {
		s.logger.Error("home answer: put", "machine", req.MachineID, "error", err)
	}
}
