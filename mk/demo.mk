# mk/demo.mk: the end-to-end demo, included from the top Makefile.
#
#   make demo
#
# Installs the Debian packages (qemu, swtpm, OVMF, iPXE), then runs
# TestDemo: sealroot alone on an isolated lab network PXE-boots a QEMU VM
# (OVMF, swtpm) into the sealroot agent, which attests over QUIC, waits for
# approval, is approved through `sealroot machine approve`, unseals its
# credential inside the VM and powers off. Every step and console line is
# printed as it happens.

GO ?= go

.PHONY: demo
demo:
	$(MAKE) deps
	$(GO) test -count=1 -timeout 30m -v ./vm-tests -vm -run 'TestDemo'
