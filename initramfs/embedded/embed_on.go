//go:build sealroot_embed

package embedded

import _ "embed"

//go:embed bin/sealroot-agent
var agent []byte

//go:embed bin/sealroot-init
var initBin []byte
