// Package vmtest boots QEMU virtual machines for end-to-end tests of the
// sealroot boot path.
//
// # Layout
//
// A [Lab] is a network namespace with a bridge (br0, 10.77.0.1/24 by
// default) that exists only inside the namespace: nothing a VM sends leaves
// it. Servers under test run in the lab via [Lab.Do] (Go code) or
// [Lab.Exec] (a process). Each [VM] gets a tap device on the bridge, an
// optional software TPM ([TPM], swtpm) and a serial console that the test
// reads line by line with [VM.Expect]; every console line also goes to
// t.Log and to a file in the test's temporary directory.
//
// # PXE
//
// Until sealroot's ProxyDHCP is in the loop, [Lab.ServeDHCP] is a small
// full DHCP server for the bridge, and [Lab.ServeRouterAdvertisements] ends
// iPXE's IPv6 autoconfiguration wait (about 16 s per iPXE start under TCG
// without a router on the link). Under QEMU the NIC's option ROM is
// already iPXE (Debian's efi-virtio.rom, BIOS and UEFI), so the first DHCP
// request carries user class "iPXE" in both firmwares.
//
// [Lab.ServeSiteDHCP] is a site's plain DHCP server instead (addresses,
// nothing about booting), next to which sealroot's ProxyDHCP
// (boot.dhcp_mode "proxy") answers; TestQuickstartAsWritten boots that way,
// from the package `make deb` builds, following the README's quickstart.
//
// # Running
//
// VM tests are slow (TCG only: KVM hangs guests on the development host), so
// they run only with `go test ./vm-tests -vm` or SEALROOT_VM=1; otherwise
// [SkipUnlessEnabled] skips them. When enabled, a missing tool (qemu, swtpm,
// OVMF) skips the test, except under CI=true, where it fails.
//
// # Cleanup
//
// Everything is removed in t.Cleanup, also when a test fails, times out on
// a context or panics: QEMU and swtpm process groups are killed, and the
// namespace (with its bridge and taps) is deleted. QEMU and swtpm also get
// SIGKILL if the test binary itself dies (Pdeathsig). A namespace with the
// same name left by a crashed run is removed when the next lab starts.
package vmtest
