// Package storm measures a boot storm: N simulated machines power on at
// once against one real `sealroot serve` process, each from its own
// address in network namespaces joined by veth links (no VMs). Its only
// content is TestStorm (make bench-storm), which runs when SEALROOT_STORM
// names the machine counts, e.g. SEALROOT_STORM=50,200,1000.
//
// # What a simulated machine does
//
// As firmware and iPXE would: DHCP (see below), TFTP of the iPXE
// binary, HTTP of the boot script, then of the kernel and the initramfs
// the script names (a 503
// makes it pause as the script says and start over, as iPXE's script
// loop does); then the agent's attestation (agent/attest, the agent's own
// client) with a software TPM of its own (test/softtpm through
// test/loadgen), honouring the server's busy retry-after (the server
// keeps a busy machine's place in its line, admission.Queue); then a
// WireGuard handshake with the server's tunnel using the boot's key sent
// in the hello (wireguard-go: this host has no kernel module; one device
// per boot whose socket is bound to the machine's address inside its
// namespace, retransmitting and answering cookie replies as any peer
// does). Artifacts have
// their real sizes: the built ones when present, else files of the sizes
// the docs state.
//
// The software TPM opens the sealed credential as a TPM would
// (softtpm.Unseal: import under the EK, PolicyPCR), so each machine
// reads the server's tunnel key, its tunnel address and its CHAP
// credentials from its own payload, brings up its tunnel (wireguard-go
// on a gVisor netstack, the socket on the machine's address in its
// namespace), logs in to its own iSCSI target over the tunnel with
// mutual CHAP (by default; see NFS roots below) and reads
// SEALROOT_STORM_ROOT_READ MiB of its root
// (default 38: what a Debian 12 boot read from its iSCSI root until
// systemd was running, measured by the VM suite's TestDistroRoot; see
// rootReadSize) in READ(16) commands of the sizes that boot used (most
// of them 4 KiB, most bytes in 512 KiB to 1 MiB; rootReadPattern), four
// in flight; SEALROOT_STORM_ROOT_CHUNK=KiB reads in commands of one size
// instead. "Root-ready" is after that read. Each boot starts
// with a TPM reset and the same measured boot (loadgen.Agent.Reboot).
//
// By default (SEALROOT_STORM_DHCP=proxy, as boot.dhcp_mode's default)
// the machines have their addresses, as from a site's DHCP server (not
// simulated), and the server runs ProxyDHCP on a bridge the client
// namespaces share: firmware PXE broadcasts a DISCOVER with vendor class
// PXEClient and boots the file the ProxyDHCP OFFER names (a BIOS ROM
// with the discovery bypass the server sends); iPXE (user class "iPXE")
// broadcasts its DISCOVER and then, as iPXE does after a ProxyDHCP
// offer, sends a REQUEST to the server's port 4011 (from its address, on
// an ephemeral port) and loads the script URL the ACK names. The agent's
// DHCP goes to the site's server and is not simulated.
//
// With SEALROOT_STORM_DHCP=full they lease their addresses from the
// server's full DHCP (boot.dhcp_mode full, a pool of exactly one address
// per machine, ARP probes and stored leases as by default) on that
// bridge, and each machine runs DISCOVER, OFFER, REQUEST, ACK three
// times, as firmware PXE (its ACK names the iPXE binary), iPXE (user
// class "iPXE": the script URL) and the agent (vendor class
// sealroot-agent) do, retransmitting after 4, 8, 16 and 32 s, then takes
// the leased address. The machines are enrolled from their namespace's
// own address, so the first storm's leases are all fresh, as on a room's
// first morning; later counts reuse the first machines'.
//
// With SEALROOT_STORM_DHCP=none the machines have their addresses, each
// namespace routed to the server over its own veth, and start at TFTP.
//
// With SEALROOT_STORM_ROOT=nfs the machines' roots are NFSv4 instead
// (root kind nfs; the server runs its nfs-ganesha, exporting each
// machine's copy-on-write root to its tunnel address only, as
// `sealroot serve` does with an nfs section). Each machine mounts its
// export through its tunnel as the agent's kernel would with vers=4.2:
// an NFSv4.2 session (EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE),
// the lookup of its export (the "nfs mount" phase), then OPEN of the
// root image's one file and READs of 48 KiB (the mean READ of the Debian
// boot measured over an NFSv4 root), four in flight on four session
// slots, of SEALROOT_STORM_ROOT_READ MiB (default 26, that boot's 25.8
// MiB), each checked against the file's bytes ("root read"); a session
// the server lost (its lease expired while the machine's requests
// waited) is recovered as the kernel client does, and counted. The client is the storm's own
// (nfs4_test.go, proven against a real ganesha by TestNFSClient): this
// host's kernel has no NFS client module, and libnfs's tools speak
// NFSv4.0 only, which the server does not serve. nfs-ganesha's CPU is
// printed apart from the server's.
//
// # What it prints
//
// Per count: the time until every machine is root-ready, p50/p99 per
// phase, failures and retries, the server's RSS and CPU per machine (its
// nfs-ganesha's apart), the simulator's CPU, and the bytes served against
// plain TCP over the same veth links measured in the same run. The last
// line is "storm: machines=N ready=R failures=F wall=Ws limit_ratio=X",
// X being the wall over the time the bytes alone need at that throughput.
// On one host the CPU of every simulated machine (its software TPM, its
// TLS and WireGuard, its iSCSI or NFS client) is spent on the same cores
// as the server's, so the line before it gives the other lower bound, the
// "cpu floor" (all that CPU over the host's cores), and the wall over the
// higher of the two bounds: how close the storm came to what this host
// allows.
//
// SEALROOT_STORM_LOG sets the server's log level (default warn; trace
// includes wireguard-go's handshake lines). The server's tunnel runs on a
// kernel TUN, as `sealroot serve` does as root; SEALROOT_STORM_NETSTACK=1
// forces its in-process netstack.
package storm
