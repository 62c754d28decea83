//go:build !linux

package udpbuf

import "net"

// Storm is the receive buffer of the TFTP and DHCP listeners.
const Storm = 4 << 20

// Grow raises c's receive buffer to Storm as far as the limit allows.
func Grow(c net.PacketConn) {
	if uc, ok := c.(*net.UDPConn); ok {
		uc.SetReadBuffer(Storm)
	}
}
