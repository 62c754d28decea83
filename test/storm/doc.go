// Package storm measures a boot storm: N simulated machines power on at
// once against one real `sealroot serve` process, each from its own
// address in network namespaces joined by veth links (no VMs). Its only
// content is TestStorm (make bench-storm), which runs when SEALROOT_STORM
// names the machine counts, e.g. SEALROOT_STORM=50,200,1000.
//
// # What a simulated machine does
//
// As firmware and iPXE would: TFTP of the iPXE binary, HTTP of the boot
// script, then of the kernel and the initramfs the script names (a 503
// makes it pause as the script says and start over, as iPXE's script
// loop does); then the agent's attestation (agent/attest, the agent's own
// client) with a software TPM of its own (test/softtpm through
// test/loadgen), honouring the server's busy retry-after; then a
// WireGuard handshake with the server's tunnel using the boot's key sent
// in the hello (wireguard-go: this host has no kernel module; one device
// per boot whose socket is bound to the machine's address inside its
// namespace, retransmitting and answering cookie replies as any peer
// does). Artifacts have
// their real sizes: the built ones when present, else files of the sizes
// the docs state.
//
// Not simulated (yet): DHCP, and the iSCSI login and boot read set: the
// software TPM cannot import the sealed credential (loadgen.ErrNoUnseal),
// so a machine has no CHAP secret (and reads the server's tunnel key from
// its state instead of its tunnel plan). "Root-ready" here means
// attested and through the tunnel handshake.
//
// SEALROOT_STORM_LOG sets the server's log level (default warn; trace
// includes wireguard-go's handshake lines).
package storm
