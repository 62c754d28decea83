// Package initramfs builds sealroot's reproducible, secret-free boot
// initramfs: a newc cpio whose /init is the statically linked sealroot
// agent, plus the kernel modules the agent loads before it reaches the
// network, and the agent's public configuration.
//
// # Layout
//
// Every record has uid/gid 0 and mtime 0 and records are sorted by name, so
// the same inputs give a byte-identical archive:
//
//	.                                   dir 0755 (the rootfs root)
//	init                                the agent, 0755
//	dev/console, dev/null               char devices 5,1 and 1,3
//	proc sys run tmp bin sbin           empty dirs (tmp 1777)
//	etc/sealroot/agent.json             Options.AgentConfig, 0444
//	lib/modules/<kver>/...              module closure, trimmed modules.*
//	lib/modules/<kver>/sealroot.preload load order (package preload)
//
// # Modules
//
// The shipped modules are the closure of Options.Modules under hard
// dependencies (modules.dep) and soft dependencies (modules.softdep, names
// resolved through modules.alias, e.g. ext4's "pre: crc32c"). The kernel
// cannot load modules on demand from the initramfs (there is no modprobe), so
// the agent loads the list in sealroot.preload in order.
//
// # Secrets
//
// The initramfs is served unauthenticated over TFTP/HTTP. Build refuses an
// agent configuration holding private key material or credential-like
// fields (ErrSecretInConfig).
package initramfs
