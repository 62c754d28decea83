//go:build !sealroot_embed

package embedded

var agent, initBin []byte
