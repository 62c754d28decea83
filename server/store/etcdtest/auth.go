package etcdtest

import (
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnableAuth locks a TLS cluster down as docs/architecture.md ("Trust in
// etcd") says a site does: authentication on, with a user for each of
// users (no password: etcd takes the common name of the client
// certificate, from CA.Issue, for the user) whose one role grants
// readwrite on prefix only. Client stays root.
func (c *Cluster) EnableAuth(prefix string, users ...string) {
	c.t.Helper()
	if c.ca == nil {
		c.t.Fatal("etcdtest: EnableAuth needs a TLS cluster (users are named by their client certificates)")
	}
	ctx := c.t.Context()
	admin := c.Client()
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	steps := []func() error{
		func() error { _, err := admin.UserAddWithOptions(ctx, "root", "", noPassword); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "sealroot"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "sealroot", prefix, clientv3.GetPrefixRangeEnd(prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
	}
	for _, user := range users {
		steps = append(steps,
			func() error { _, err := admin.UserAddWithOptions(ctx, user, "", noPassword); return err },
			func() error { _, err := admin.UserGrantRole(ctx, user, "sealroot"); return err })
	}
	steps = append(steps, func() error { _, err := admin.AuthEnable(ctx); return err })
	for _, step := range steps {
		if err := step(); err != nil {
			c.t.Fatalf("etcdtest: authentication: %v", err)
		}
	}
}
