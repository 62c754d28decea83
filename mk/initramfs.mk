# mk/initramfs.mk: the default agent initramfs, included from the top Makefile.
#
#   make initramfs                      # build/initramfs.cpio.zst
#   make initramfs AGENT_CONFIG=agent.json INITRAMFS_COMPRESSION=gzip
#
# Builds ./cmd/sealroot-agent (static, reproducible), fetches Debian's amd64
# kernel into build/cache (apt-get; reused when cached) and ships the default
# module closure. The last line printed is "initramfs: <path> <bytes> bytes";
# the "kernel:" line before it names the matching vmlinuz.

GO ?= go
INITRAMFS_COMPRESSION ?= zstd
INITRAMFS_EXT_gzip := .gz
INITRAMFS_EXT_zstd := .zst
INITRAMFS_EXT_xz := .xz
INITRAMFS_EXT_none :=
INITRAMFS ?= build/initramfs.cpio$(INITRAMFS_EXT_$(INITRAMFS_COMPRESSION))
AGENT_PKG ?= ./cmd/sealroot-agent
AGENT_CONFIG ?=
KERNEL_CACHE ?= build/cache

.PHONY: initramfs
initramfs:
	@mkdir -p build
	@GOFLAGS=-mod=mod $(GO) run ./cmd/sealroot initramfs build \
		--out $(INITRAMFS) --compression $(INITRAMFS_COMPRESSION) \
		--agent-pkg $(AGENT_PKG) --kernel-cache $(KERNEL_CACHE) \
		$(if $(AGENT_CONFIG),--agent-config $(AGENT_CONFIG))

# bench-initramfs builds the default initramfs with gzip, zstd and xz and
# boots Debian's kernel with each in QEMU (TCG, no network), reading the
# kernel's printk times from "Trying to unpack rootfs image as initramfs"
# to "Freeing initrd memory" (decompress + unpack; the guest clock counts
# instructions, -icount shift=0, so host load does not skew it).
# Last line: "initramfs: bytes gzip=.. zstd=.. xz=.. default=.. limit=..;
# unpack/gzip zstd=<ratio> xz=<ratio>" (3 to 15 minutes).
.PHONY: bench-initramfs
bench-initramfs:
	@mkdir -p build
	@SEALROOT_BENCH=1 $(GO) test -count=1 -timeout 60m -run '^TestInitramfsUnpack$$' -v ./vm-tests -vm \
		> build/bench-initramfs.log 2>&1 || { tail -50 build/bench-initramfs.log; exit 1; }
	@grep '^initramfs' build/bench-initramfs.log
