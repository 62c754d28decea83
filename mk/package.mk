# mk/package.mk: the Debian package and the source install, included from
# the top Makefile.
#
#   make deb                  # build/sealroot_<version>_amd64.deb (nfpm, no dpkg tools)
#   make install              # the same files under $(DESTDIR)/ (default /)
#
# Both build the agent and the first-stage init (static, stamped with
# VERSION), embed them in /usr/bin/sealroot (build tag sealroot_embed) so
# `sealroot initramfs build` needs no Go and no checkout, then lay out the
# systemd unit, the example configuration, /var/lib/sealroot (0700),
# completions and docs (cmd/sealroot-pkg).

EMBED_DIR := initramfs/embedded/bin
DESTDIR   ?=
DEB_OUT   ?= $(BUILD)

.PHONY: deb install pkg-binary

pkg-binary:
	@mkdir -p $(BUILD)/pkg $(EMBED_DIR)
	CGO_ENABLED=0 GOAMD64=v1 $(GO) build -trimpath -ldflags='-s -w -buildid= $(VERSION_LDFLAGS)' -o $(EMBED_DIR)/sealroot-agent ./cmd/sealroot-agent
	CGO_ENABLED=0 GOAMD64=v1 $(GO) build -trimpath -ldflags='-s -w -buildid= $(VERSION_LDFLAGS)' -o $(EMBED_DIR)/sealroot-init ./cmd/sealroot-init
	$(GO) build -trimpath -tags sealroot_embed -ldflags='$(VERSION_LDFLAGS)' -o $(BUILD)/pkg/sealroot ./cmd/sealroot
	$(GO) build -o $(BUILD)/pkg/sealroot-pkg ./cmd/sealroot-pkg

deb: pkg-binary
	$(BUILD)/pkg/sealroot-pkg -bin $(BUILD)/pkg/sealroot -out $(DEB_OUT)

install: pkg-binary
	$(BUILD)/pkg/sealroot-pkg -bin $(BUILD)/pkg/sealroot -root $(if $(DESTDIR),$(DESTDIR),/)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
