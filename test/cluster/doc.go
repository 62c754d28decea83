// Package cluster runs several real `sealroot serve` processes sharing one
// etcd cluster, each in its own network namespace, and a simulated
// machine (a software TPM, test/loadgen) in a third that reaches both
// servers over veth links; the two servers' namespaces are linked too,
// for the bases they fetch from each other. Its only content is
// TestServeProcessesShareEtcd.
//
// The etcd cluster (three members, embedded: server/store/etcdtest) runs in
// the test process, on the host end of the servers' veth links, so the
// servers reach it and nothing else does. Its members serve clients over
// TLS only and require a client certificate from their CA; each server
// has its own (store.cert_file, store.key_file, store.ca_file), and with
// etcd authentication on it is the etcd user its certificate's CN names,
// whose role is limited to the test's prefix.
// Operators' commands go through the `sealroot` CLI on each server's admin
// socket, as an operator's would.
package cluster
