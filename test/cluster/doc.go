// Package cluster runs several real `sealroot serve` processes sharing one
// etcd cluster, each in its own network namespace, and a simulated
// machine (a software TPM, test/loadgen) in a third that reaches both
// servers over veth links; the two servers' namespaces are linked too,
// for the bases they fetch from each other. Its only content is
// TestServeProcessesShareEtcd.
//
// The etcd cluster (three members, embedded: server/store/etcdtest) runs in
// the test process, on the host end of the servers' veth links, so the
// servers reach it and nothing else does. Operators' commands go through
// the `sealroot` CLI on each server's admin socket, as an operator's would.
package cluster
