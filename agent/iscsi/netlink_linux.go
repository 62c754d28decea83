package iscsi

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// transportHandleFile names the iscsi_tcp transport's handle.
const transportHandleFile = "/sys/class/iscsi_transport/tcp/handle"

// Netlink is a NETLINK_ISCSI socket for requests to the iscsi_tcp
// transport. It is not safe for concurrent use.
type Netlink struct {
	fd     int
	handle uint64
	seq    uint32
	buf    []byte
	// pending are kernel events that arrived while a request waited for
	// its reply, for nextEvent.
	pending []event
}

// maxPending bounds the events kept while waiting for replies.
const maxPending = 64

// OpenNetlink opens a NETLINK_ISCSI socket. With events set it also
// joins the daemon group that receives ISCSI_KEVENT_CONN_ERROR.
// scsi_transport_iscsi and iscsi_tcp must be loaded.
func OpenNetlink(events bool) (*Netlink, error) {
	hb, err := os.ReadFile(transportHandleFile)
	if err != nil {
		return nil, fmt.Errorf("iscsi: transport handle (is iscsi_tcp loaded?): %w", err)
	}
	handle, err := strconv.ParseUint(strings.TrimSpace(string(hb)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("iscsi: transport handle %q: %w", hb, err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, netlinkISCSI)
	if err != nil {
		return nil, os.NewSyscallError("socket(NETLINK_ISCSI)", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if events {
		sa.Groups = groupISCSID
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind(NETLINK_ISCSI)", err)
	}
	return &Netlink{fd: fd, handle: handle, buf: make([]byte, 16<<10)}, nil
}

// Close closes the socket.
func (n *Netlink) Close() error { return unix.Close(n.fd) }

// request sends one request and waits (up to timeout) for its reply,
// skipping kernel events that arrive meanwhile.
func (n *Netlink) request(typ uint32, u, data []byte) (event, error) {
	n.seq++
	msg := encodeRequest(typ, n.seq, n.handle, u, data)
	if err := unix.Sendto(n.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return event{}, os.NewSyscallError("sendto(NETLINK_ISCSI)", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, err := n.receive(time.Until(deadline))
		if err != nil {
			return event{}, err
		}
		for _, e := range evs {
			switch e.typ {
			case typ:
				return e, nil
			case kevIfError:
				return e, fmt.Errorf("%w: request %d: %w", ErrKernel, typ, syscall.Errno(-e.iferror))
			case kevRecvPDU, kevConnError:
				if len(n.pending) < maxPending {
					n.pending = append(n.pending, e)
				}
			}
		}
	}
}

// receive reads one datagram of events, waiting at most timeout.
func (n *Netlink) receive(timeout time.Duration) ([]event, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("iscsi: netlink: %w", os.ErrDeadlineExceeded)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(n.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, os.NewSyscallError("setsockopt", err)
	}
	m, _, err := unix.Recvfrom(n.fd, n.buf, 0)
	// EINTR: a stop and continue (systemd-shutdown sends SIGSTOP/SIGCONT to
	// every process, spared @ daemons included) interrupts a recvfrom with
	// SO_RCVTIMEO even without a handler; treat it as a timeout and poll again.
	if err == unix.EAGAIN || err == unix.EINTR {
		return nil, fmt.Errorf("iscsi: netlink: %w", os.ErrDeadlineExceeded)
	}
	if err != nil {
		return nil, os.NewSyscallError("recvfrom(NETLINK_ISCSI)", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(n.buf[:m])
	if err != nil {
		return nil, fmt.Errorf("iscsi: netlink: %w", err)
	}
	var evs []event
	for _, msg := range msgs {
		if e, err := decodeEvent(msg.Data); err == nil && e.handle == n.handle {
			evs = append(evs, e)
		}
	}
	return evs, nil
}

func (n *Netlink) status(typ uint32, u, data []byte) error {
	e, err := n.request(typ, u, data)
	if err != nil {
		return err
	}
	if rc := e.retcode(); rc != 0 {
		return fmt.Errorf("%w: request %d: %w", ErrKernel, typ, syscall.Errno(-rc))
	}
	return nil
}

// createSession creates a kernel session (and its SCSI host).
func (n *Netlink) createSession(initialCmdSN uint32, cmdsMax, queueDepth uint16) (sid, hostNo uint32, err error) {
	u := words(initialCmdSN, uint32(cmdsMax)|uint32(queueDepth)<<16)
	e, err := n.request(uevCreateSession, u, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("create session: %w", err)
	}
	return e.word(0), e.word(1), nil
}

func (n *Netlink) destroySession(sid uint32) error {
	return n.status(uevDestroySession, words(sid), nil)
}

func (n *Netlink) createConn(sid, cid uint32) (uint32, error) {
	e, err := n.request(uevCreateConn, words(sid, cid), nil)
	if err != nil {
		return 0, fmt.Errorf("create connection: %w", err)
	}
	return e.word(1), nil
}

func (n *Netlink) destroyConn(sid, cid uint32) error {
	return n.status(uevDestroyConn, words(sid, cid), nil)
}

func (n *Netlink) bindConn(sid, cid uint32, fd int) error {
	if err := n.status(uevBindConn, bindRequest(sid, cid, fd), nil); err != nil {
		return fmt.Errorf("bind connection: %w", err)
	}
	return nil
}

func (n *Netlink) setParam(sid, cid uint32, p param, value string) error {
	u, data := setParamRequest(sid, cid, p, value)
	if err := n.status(uevSetParam, u, data); err != nil {
		return fmt.Errorf("set param %d: %w", p, err)
	}
	return nil
}

func (n *Netlink) startConn(sid, cid uint32) error {
	if err := n.status(uevStartConn, words(sid, cid), nil); err != nil {
		return fmt.Errorf("start connection: %w", err)
	}
	return nil
}

// sendPDU asks the kernel to send a PDU on the bound connection: the
// kernel assigns the ITT and stamps the session's CmdSN.
func (n *Netlink) sendPDU(sid, cid uint32, hdr, data []byte) error {
	u, payload := sendPDURequest(sid, cid, hdr, data)
	if err := n.status(uevSendPDU, u, payload); err != nil {
		return fmt.Errorf("send PDU: %w", err)
	}
	return nil
}

// event returns the next kernel event (RECV_PDU or CONN_ERROR), waiting
// at most timeout.
func (n *Netlink) event(timeout time.Duration) (event, error) {
	deadline := time.Now().Add(timeout)
	for len(n.pending) == 0 {
		evs, err := n.receive(time.Until(deadline))
		if err != nil {
			return event{}, err
		}
		for _, e := range evs {
			if e.typ == kevRecvPDU || e.typ == kevConnError {
				n.pending = append(n.pending, e)
			}
		}
	}
	e := n.pending[0]
	n.pending = n.pending[1:]
	return e, nil
}

func (n *Netlink) stopConn(sid, cid, flag uint32) error {
	if err := n.status(uevStopConn, stopRequest(sid, cid, flag), nil); err != nil {
		return fmt.Errorf("stop connection: %w", err)
	}
	return nil
}
