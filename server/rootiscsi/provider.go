// Package rootiscsi serves each attested machine its own iSCSI root: one
// target per machine over the machine's copy-on-write volume (package
// volume) of a base image (package image), with CHAP and mutual CHAP
// credentials that are fresh random values at every release and reach the
// agent only inside its sealed credential. It is a root provider of
// package roots.
//
// # Access
//
// A tunnelled machine's target lives on the Tunnelled iSCSI server, whose
// listener is bound to the WireGuard tunnel only, and admits a login only
// if the connection's source address is the machine's own tunnel address
// (Peers.PeerAddr) and the initiator name is the machine's. A machine on
// the plain transport gets its target on the Plain server, admitted from
// the address it attested from. Either way the login also needs that
// boot's CHAP secrets: a new release replaces the target, which closes the
// old sessions and refuses the old secrets from then on.
//
// # Restarts
//
// With StateDir and Box set, each target (its IQN, admitted address and
// CHAP credentials) is recorded encrypted in StateDir, and Restore brings
// the targets back after a server restart, so a running machine logs in
// again with the credentials it holds.
package rootiscsi

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/iscsi"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/volume"
	"github.com/sealroot/sealroot/wire"
)

// IQN prefixes; a machine's names end with the first 16 hex digits of its ID.
const (
	TargetPrefix    = "iqn.2026-11.org.sealroot:"
	InitiatorPrefix = "iqn.2026-11.org.sealroot.agent:"
)

// DefaultPort is the iSCSI port.
const DefaultPort = 3260

// credentialBytes is the entropy of each CHAP user name and secret.
const credentialBytes = 16

// Errors.
var (
	// ErrNoImage means an iSCSI root names no image.
	ErrNoImage = errors.New("iscsi root names no image (root parameter \"image\")")
	// ErrNoPortal means no iSCSI listener can reach the machine: no
	// tunnel listener for a tunnelled machine, or no plain listener for
	// one without a tunnel.
	ErrNoPortal = errors.New("no iSCSI listener for this machine's transport")
	// ErrAddress means the machine's address cannot be used for access
	// control.
	ErrAddress = errors.New("machine address unusable for iSCSI access control")
)

// Images finds images by name and bases by digest; *image.Store
// implements it.
type Images interface {
	Get(ref string) (*image.Image, error)
	// Resolve is the image a root made on base mounts (image.Store.Resolve).
	Resolve(ref, base string) (*image.Image, error)
	BasePath(digest string) (string, error)
}

// Peers maps a tunnel source address to its machine; *tunnel.Tunnel
// implements it.
type Peers interface {
	PeerAddr(remote net.Addr) (machineID string, ok bool)
}

// Box encrypts records at rest; *secrets.Box implements it.
type Box interface {
	Encrypt(plaintext []byte) ([]byte, error)
	Decrypt(ciphertext []byte) ([]byte, error)
}

// Config configures a Provider.
type Config struct {
	Images  Images          // required
	Volumes *volume.Manager // required

	// Tunnelled serves machines with a tunnel; its listener must be on
	// the tunnel only (tunnel.Tunnel.Listen). TunnelPortal is the ip:port
	// of that listener; Peers checks the source address of logins.
	Tunnelled    *iscsi.Server
	TunnelPortal string
	Peers        Peers
	// Plain serves machines on the plain transport on PlainPortal.
	Plain       *iscsi.Server
	PlainPortal string

	// StateDir and Box, when both set, keep targets across restarts.
	StateDir string
	Box      Box

	// UserRootEnded, when set, is told each time a session of a user's
	// root ends (see UserRootEnd); it runs on the iSCSI connection's
	// goroutine and must not block.
	UserRootEnded func(UserRootEnd)

	Rand   io.Reader    // default crypto/rand
	Logger hclog.Logger // default discards
}

// Provider serves machines' iSCSI roots. It is safe for concurrent use.
type Provider struct {
	cfg Config
	log hclog.Logger
	rnd io.Reader

	mu       sync.Mutex
	machines map[string]*served // by machine ID
}

// served is one machine's live target.
type served struct {
	rec *record
	lun lun
	srv *iscsi.Server
}

// lun is a target's storage: the machine's volume, or for a volatile
// machine its base, read-only.
type lun interface {
	iscsi.BackingStore
	io.Closer
}

// record is what a target needs to be rebuilt; it holds the CHAP secrets.
type record struct {
	MachineID string `json:"machine_id"`
	Base      string `json:"base"`
	// Volatile serves the base itself, read-only, instead of a volume.
	Volatile  bool   `json:"volatile,omitempty"`
	Tunnelled bool   `json:"tunnelled"`
	Addr      string `json:"addr,omitempty"` // admitted source address, plain transport
	// Holder is the machine that mounts a user's root (MachineID is then
	// the root's key, roots.UserRootKey); empty for a machine's own root.
	Holder string `json:"holder,omitempty"`
	// User and Exchange name a user's root and the exchange that
	// released the holder's boot (roots.Request).
	User     string   `json:"user,omitempty"`
	Exchange string   `json:"exchange,omitempty"`
	CHAP     pdu.CHAP `json:"chap"`
}

// New returns a Provider.
func New(cfg Config) (*Provider, error) {
	if cfg.Images == nil || cfg.Volumes == nil {
		return nil, errors.New("rootiscsi: Images and Volumes are required")
	}
	if cfg.Tunnelled == nil && cfg.Plain == nil {
		return nil, errors.New("rootiscsi: a Tunnelled or Plain iSCSI server is required")
	}
	if cfg.Tunnelled != nil && (cfg.Peers == nil || cfg.TunnelPortal == "") {
		return nil, errors.New("rootiscsi: Tunnelled needs Peers and TunnelPortal")
	}
	if cfg.Plain != nil && cfg.PlainPortal == "" {
		return nil, errors.New("rootiscsi: Plain needs PlainPortal")
	}
	p := &Provider{cfg: cfg, log: cfg.Logger, rnd: cfg.Rand, machines: map[string]*served{}}
	if p.log == nil {
		p.log = hclog.NewNullLogger()
	}
	p.log = p.log.Named("rootiscsi")
	if p.rnd == nil {
		p.rnd = rand.Reader
	}
	return p, nil
}

// TargetIQN is the target name of a machine.
func TargetIQN(machineID string) string { return TargetPrefix + shortID(machineID) }

// InitiatorIQN is the initiator name a machine's target admits.
func InitiatorIQN(machineID string) string { return InitiatorPrefix + shortID(machineID) }

func shortID(id string) string { return id[:min(len(id), 16)] }

// Prepare gives the machine its target for this boot: it creates the
// volume from the image on first boot; a volume made on a version of the
// plan's image keeps its base (Upgrade moves it); Open refuses a volume
// made from another image's base with volume.ErrBaseMismatch; replaces any previous target
// with one under fresh CHAP credentials and returns the agent's plan and
// those credentials (wire.SecretCHAP* names). req.Tunnel is nil on the
// plain transport; req.RemoteAddr must be the address the machine attests
// from. The plan is of a kind the provider serves (Serves; package roots
// routes by kind).
//
// A volatile root whose base goes over iSCSI (kind "volatile" with
// parameter "via" = "iscsi") gets a read-only target over the base
// itself, shared with every volatile machine of that base; the agent puts
// a tmpfs upper over it.
func (p *Provider) Prepare(ctx context.Context, req roots.Request) (wire.RootPlan, map[string][]byte, error) {
	key := req.RootKey()
	name := req.Plan.Params[wire.ImageParam]
	if name == "" {
		return wire.RootPlan{}, nil, ErrNoImage
	}
	var base string
	if req.Plan.Kind != wire.RootVolatile {
		if meta, err := p.cfg.Volumes.Meta(key); err == nil {
			base = meta.Base
		}
	}
	im, err := p.cfg.Images.Resolve(name, base)
	if err != nil {
		return wire.RootPlan{}, nil, fmt.Errorf("root image: %w", err)
	}
	rec := &record{MachineID: key, Base: im.Digest, Volatile: req.Plan.Kind == wire.RootVolatile, Tunnelled: req.Tunnel != nil}
	if key != req.MachineID {
		rec.Holder, rec.User, rec.Exchange = req.MachineID, req.User, req.Exchange
	}
	srv, portal := p.cfg.Plain, p.cfg.PlainPortal
	if rec.Tunnelled {
		srv, portal = p.cfg.Tunnelled, p.cfg.TunnelPortal
	} else if rec.Addr, err = hostOf(req.RemoteAddr); err != nil {
		return wire.RootPlan{}, nil, err
	}
	if srv == nil {
		return wire.RootPlan{}, nil, fmt.Errorf("machine tunnelled=%v: %w", rec.Tunnelled, ErrNoPortal)
	}
	if rec.CHAP, err = p.newCHAP(); err != nil {
		return wire.RootPlan{}, nil, err
	}
	// The machine boots again: the user roots it mounted before are no
	// longer its own.
	if err := p.withdraw(func(k string, r *record) bool { return r.Holder == req.MachineID && k != key }); err != nil {
		return wire.RootPlan{}, nil, err
	}
	if err := p.serve(ctx, rec, true); err != nil {
		return wire.RootPlan{}, nil, err
	}
	if err := p.save(rec); err != nil {
		p.Release(ctx, key)
		return wire.RootPlan{}, nil, err
	}
	p.log.Info("iscsi root ready", "machine", key, "target", TargetIQN(key), "base", im.Digest,
		"volatile", rec.Volatile, "tunnelled", rec.Tunnelled, "portal", portal)
	return plan(key, req.Plan, portal), secretsOf(rec.CHAP), nil
}

// plan is the agent's root plan: the operator's parameters with the
// target's own on top.
func plan(id string, root wire.RootPlan, portal string) wire.RootPlan {
	params := make(map[string]string, len(root.Params)+5)
	for k, v := range root.Params {
		params[k] = v
	}
	params[wire.ISCSIPortal] = portal
	params[wire.ISCSITarget] = TargetIQN(id)
	params[wire.ISCSIInitiator] = InitiatorIQN(id)
	params[wire.ISCSILUN] = "0"
	params[wire.ISCSIFSType] = "ext4"
	return wire.RootPlan{Kind: root.Kind, Init: root.Init, Params: params}
}

// Serves reports whether root is one this provider serves: kind iscsi, or
// volatile with its base via iSCSI.
func Serves(root wire.RootPlan) bool {
	return root.Kind == wire.RootISCSI || (root.Kind == wire.RootVolatile && root.Params[wire.VolatileVia] == wire.ViaISCSI)
}

func secretsOf(c pdu.CHAP) map[string][]byte {
	return map[string][]byte{
		wire.SecretCHAPUser:         []byte(c.User),
		wire.SecretCHAPSecret:       []byte(c.Secret),
		wire.SecretCHAPTargetUser:   []byte(c.TargetUser),
		wire.SecretCHAPTargetSecret: []byte(c.TargetSecret),
	}
}

// newCHAP draws four independent random values of credentialBytes each.
func (p *Provider) newCHAP() (pdu.CHAP, error) {
	var v [4]string
	for i := range v {
		b := make([]byte, credentialBytes)
		if _, err := io.ReadFull(p.rnd, b); err != nil {
			return pdu.CHAP{}, fmt.Errorf("rootiscsi: CHAP credentials: %w", err)
		}
		v[i] = hex.EncodeToString(b)
	}
	return pdu.CHAP{User: v[0], Secret: v[1], TargetUser: v[2], TargetSecret: v[3]}, nil
}

// hostOf returns the IP of an ip:port address.
func hostOf(addr string) (string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrAddress, addr, err)
	}
	return ap.Addr().Unmap().String(), nil
}

// serve opens (creating if allowed) the machine's volume and installs a
// target for rec, replacing the machine's previous target.
func (p *Provider) serve(ctx context.Context, rec *record, create bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.machines[rec.MachineID]
	var vol lun
	if old != nil && old.rec.Base == rec.Base && old.rec.Volatile == rec.Volatile {
		vol = old.lun // keep the open volume; only the target changes
	}
	if old != nil {
		old.srv.RemoveTarget(TargetIQN(rec.MachineID))
		if vol == nil {
			old.lun.Close()
		}
		delete(p.machines, rec.MachineID)
	}
	if vol == nil {
		var err error
		if rec.Volatile {
			vol, err = p.openBase(rec.Base)
		} else {
			vol, err = p.openVolume(ctx, rec.MachineID, rec.Base, create)
		}
		if err != nil {
			return err
		}
	}
	srv := p.cfg.Plain
	if rec.Tunnelled {
		srv = p.cfg.Tunnelled
	}
	t := &iscsi.Target{
		IQN:            TargetIQN(rec.MachineID),
		LUN:            vol,
		Serial:         shortID(rec.MachineID),
		ReadOnly:       rec.Volatile,
		Auth:           &rec.CHAP,
		AllowInitiator: p.admit(rec),
		SessionEnded:   p.sessionEnded(rec),
	}
	if err := srv.AddTarget(t); err != nil {
		vol.Close()
		return fmt.Errorf("rootiscsi: %w", err)
	}
	p.machines[rec.MachineID] = &served{rec: rec, lun: vol, srv: srv}
	return nil
}

// openBase opens a volatile machine's base read-only.
func (p *Provider) openBase(digest string) (lun, error) {
	path, err := p.cfg.Images.BasePath(digest)
	if err != nil {
		return nil, fmt.Errorf("root base: %w", err)
	}
	f, err := iscsi.OpenFileReadOnly(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (p *Provider) openVolume(ctx context.Context, id, base string, create bool) (lun, error) {
	vol, err := p.cfg.Volumes.Open(id, base)
	if create && errors.Is(err, volume.ErrNotFound) {
		vol, err = p.cfg.Volumes.Create(ctx, id, base)
	}
	if err != nil {
		return nil, fmt.Errorf("root volume: %w", err)
	}
	return vol, nil
}

// admit is the target's access check: the machine's initiator name from
// the machine's own address.
func (p *Provider) admit(rec *record) func(net.Addr, string) bool {
	id, initiator := rec.MachineID, InitiatorIQN(rec.MachineID)
	if rec.Holder != "" {
		id = rec.Holder
	}
	if rec.Tunnelled {
		peers := p.cfg.Peers
		return func(remote net.Addr, name string) bool {
			got, ok := peers.PeerAddr(remote)
			return ok && got == id && name == initiator
		}
	}
	want := rec.Addr
	return func(remote net.Addr, name string) bool {
		host, err := hostOf(remote.String())
		return err == nil && host == want && name == initiator
	}
}

// Release withdraws the machine's target (closing its sessions), closes
// its volume and forgets its credentials. The volume itself stays.
func (p *Provider) Release(_ context.Context, machineID string) error {
	err := p.withdraw(func(key string, rec *record) bool { return key == machineID || rec.Holder == machineID })
	return errors.Join(err, p.remove(machineID)) // a record not served (restore failed) goes too
}

// withdraw removes the targets of the roots that match (by key and
// record), closes their volumes and forgets their credentials.
func (p *Provider) withdraw(match func(key string, rec *record) bool) error {
	p.mu.Lock()
	var gone []*served
	for k, s := range p.machines {
		if match(k, s.rec) {
			gone = append(gone, s)
			delete(p.machines, k)
		}
	}
	p.mu.Unlock()
	var errs []error
	for _, s := range gone {
		s.srv.RemoveTarget(TargetIQN(s.rec.MachineID))
		errs = append(errs, s.lun.Close())
		p.log.Info("iscsi root withdrawn", "root", s.rec.MachineID, "machine", cmp.Or(s.rec.Holder, s.rec.MachineID))
	}
	for _, s := range gone {
		errs = append(errs, p.remove(s.rec.MachineID))
	}
	return errors.Join(errs...)
}

// ReleaseIdle withdraws the machine's target as Release does, but only
// when no initiator is logged in to it: with a session open it changes
// nothing and fails with roots.ErrInUse. Once it returns nil the volume
// is closed and no login can reach it until the next release.
func (p *Provider) ReleaseIdle(_ context.Context, machineID string) error {
	p.mu.Lock()
	s := p.machines[machineID]
	if s != nil && !s.srv.RemoveTargetIfIdle(TargetIQN(machineID)) {
		p.mu.Unlock()
		return fmt.Errorf("machine %.12s: an iSCSI session is logged in to its root: %w", machineID, roots.ErrInUse)
	}
	delete(p.machines, machineID)
	p.mu.Unlock()
	var err error
	if s != nil {
		err = s.lun.Close()
		p.log.Info("iscsi root withdrawn (idle)", "machine", machineID)
	}
	return errors.Join(err, p.remove(machineID))
}

// Serving reports whether the machine has a target.
func (p *Provider) Serving(machineID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.machines[machineID] != nil
}

// Close withdraws every target and closes the volumes; records stay for
// Restore.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for id, s := range p.machines {
		s.srv.RemoveTarget(TargetIQN(id))
		errs = append(errs, s.lun.Close())
		delete(p.machines, id)
	}
	return errors.Join(errs...)
}

// portalPort formats ip:port.
func portalPort(ip netip.Addr, port int) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// TunnelPortal is the portal of a tunnel listener on serverAddr:port.
func TunnelPortal(serverAddr netip.Addr, port int) string { return portalPort(serverAddr, port) }
