//go:build !linux

package boot

import "net"

func growReadBuffer(c net.PacketConn) {
	if uc, ok := c.(*net.UDPConn); ok {
		uc.SetReadBuffer(4 << 20)
	}
}
