// Package udpbuf gives a UDP listener the receive buffer a boot storm
// needs.
package udpbuf

import (
	"net"

	"golang.org/x/sys/unix"
)

// Storm is the receive buffer of the TFTP and DHCP listeners: room for
// the requests of a room of machines powered on at once (about 1.5-2.5
// KiB of kernel memory each), which otherwise overflow the default
// buffer (about 200 KiB) and wait out the firmware's retransmission
// timeout.
const Storm = 4 << 20

// Grow raises c's receive buffer to Storm: past net.core.rmem_max with
// CAP_NET_ADMIN (SO_RCVBUFFORCE), else as far as the limit allows. It is
// best effort: the default buffer works, slower.
func Grow(c net.PacketConn) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, Storm)
	})
	if serr != nil {
		uc.SetReadBuffer(Storm)
	}
}
