// Package embedded carries the agent and the first-stage init inside the
// sealroot binary of a package build (build tag sealroot_embed; `make deb`
// and `make install` put the binaries in bin/ first), so that `sealroot
// initramfs build` works on a server with no Go toolchain and no checkout.
// Without the tag both are nil and the initramfs builder compiles them
// from source.
package embedded

// Agent is the static agent binary, or nil.
func Agent() []byte { return agent }

// Init is the static first-stage /init binary, or nil.
func Init() []byte { return initBin }
