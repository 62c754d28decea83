package boot

import (
	"net"

	"golang.org/x/sys/unix"
)

// stormReadBuffer is the TFTP listener's receive buffer: room for the
// read requests of a room of machines powered on at once (about 1.5 KiB
// of kernel memory each), which otherwise overflow the default buffer
// and wait out the firmware's retransmission timeout.
const stormReadBuffer = 4 << 20

// growReadBuffer raises c's receive buffer to stormReadBuffer: past
// net.core.rmem_max with CAP_NET_ADMIN (SO_RCVBUFFORCE), else as far as
// the limit allows. It is best effort: the default buffer works, slower.
func growReadBuffer(c net.PacketConn) {
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
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, stormReadBuffer)
	})
	if serr != nil {
		uc.SetReadBuffer(stormReadBuffer)
	}
}
