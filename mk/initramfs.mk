# mk/initramfs.mk: the default agent initramfs, included from the top Makefile.
#
#   make initramfs                      # build/initramfs.cpio.gz
#   make initramfs AGENT_CONFIG=agent.json INITRAMFS_COMPRESSION=zstd
#
# Builds ./cmd/sealroot-agent (static, reproducible), fetches Debian's amd64
# kernel into build/cache (apt-get; reused when cached) and ships the default
# module closure. The last line printed is "initramfs: <path> <bytes> bytes";
# the "kernel:" line before it names the matching vmlinuz.

GO ?= go
INITRAMFS_COMPRESSION ?= gzip
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
