package basepeer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/store"
)

// ErrNotOnPeers means no running peer holds the image or base asked for.
var ErrNotOnPeers = errors.New("no running peer holds it")

// Peers lists the running servers; store.ClusterStore implements it.
type Peers interface {
	Servers(ctx context.Context) ([]store.ServerInfo, error)
}

// PullerConfig configures a Puller.
type PullerConfig struct {
	Self   string       // this server's name in the registry, skipped
	Peers  Peers        // required
	Client *Client      // required
	Images *image.Store // required: where pulled bases and versions go
	Logger hclog.Logger // default discards
}

// Puller makes images that peers hold available here. It is safe for
// concurrent use. A fetch runs on the Puller's own goroutine, not the
// caller's context: concurrent needs of one reference or base share it,
// and a caller that gives up (a boot that timed out) leaves it running
// for the next. Close stops the fetches and waits for them.
type Puller struct {
	cfg    PullerConfig
	log    hclog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the fetches running

	mu      sync.Mutex
	pending map[string]*call // by "ref NAME" or "base DIGEST"
}

type call struct {
	done chan struct{}
	err  error
}

// NewPuller returns a Puller.
func NewPuller(cfg PullerConfig) *Puller {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Puller{cfg: cfg, log: cfg.Logger.Named("basepeer"), ctx: ctx, cancel: cancel, pending: map[string]*call{}}
}

// Close stops the fetches in progress (they leave nothing behind) and
// waits for them. Calls after Close fail.
func (p *Puller) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// Pulled says what Pull did.
type Pulled struct {
	Digest string
	// From is the peer the base came from; "" when it was here already.
	From string
	// Versions are the versions naming it that are recorded here now.
	Versions []image.Image
}

// PeerImages is what a running peer serving bases holds.
type PeerImages struct {
	Server string // its name in the registry
	Addr   string // its base address
	Images []image.Image
	Err    error // why it did not list them
}

// Pull makes ref available here. ref is a base, sha256:HEX, or a
// version: NAME@vN, or NAME for the highest version of NAME that a
// running peer holds. It fetches the base unless it is here, then
// records the versions naming it: the one asked for, or for a base every
// version a peer lists for it. It fails with ErrNotOnPeers, naming ref,
// when no running peer holds it.
func (p *Puller) Pull(ctx context.Context, ref string) (*Pulled, error) {
	peers, asked, err := p.list(ctx)
	if err != nil {
		return nil, err
	}
	digest, versions, holders, err := choose(ref, peers)
	if err != nil {
		return nil, err
	}
	if len(holders) == 0 {
		return nil, fmt.Errorf("image %s: %w (%s)", ref, ErrNotOnPeers, asked)
	}
	out := &Pulled{Digest: digest}
	if !p.cfg.Images.Has(digest) {
		if out.From, err = p.fetch(ctx, digest, holders); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, v := range versions {
		im, err := p.cfg.Images.AddVersion(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Versions = append(out.Versions, *im)
	}
	return out, errors.Join(errs...)
}

// Ensure makes sure ref (NAME or NAME@vN) resolves here to a base that
// is here, pulling it from a peer when not (see Pull). A root plan names
// ref; the root provider resolves it next.
func (p *Puller) Ensure(ctx context.Context, ref string) error {
	im, err := p.cfg.Images.Get(ref)
	switch {
	case err == nil && p.cfg.Images.Has(im.Digest):
		return nil
	case err == nil:
		ref = "sha256:" + im.Digest
	case !errors.Is(err, image.ErrNotFound):
		return err
	}
	return p.once(ctx, "ref "+ref, func(ctx context.Context) error {
		pulled, err := p.Pull(ctx, ref)
		if err == nil {
			p.log.Info("image pulled for a root", "image", ref, "digest", pulled.Digest, "from", pulled.From)
		}
		return err
	})
}

// PeerImages asks every running peer serving bases for its versions,
// sorted by server name. A peer that does not answer is listed with its
// error.
func (p *Puller) PeerImages(ctx context.Context) ([]PeerImages, error) {
	servers, err := p.cfg.Peers.Servers(ctx)
	if err != nil {
		return nil, fmt.Errorf("running servers: %w", err)
	}
	var out []PeerImages
	for _, si := range servers {
		if si.Name == p.cfg.Self || si.BaseAddress == "" {
			continue
		}
		pi := PeerImages{Server: si.Name, Addr: si.BaseAddress}
		if pi.Images, pi.Err = p.cfg.Client.Images(ctx, si.BaseAddress); pi.Err != nil {
			p.log.Warn("peer did not list its images", "peer", si.Name, "error", pi.Err)
		}
		out = append(out, pi)
	}
	return out, nil
}

// list is PeerImages of the peers that answered; asked says whom it
// asked, with the errors of those that did not answer.
func (p *Puller) list(ctx context.Context) (peers []PeerImages, asked string, err error) {
	all, err := p.PeerImages(ctx)
	if err != nil {
		return nil, "", err
	}
	if len(all) == 0 {
		return nil, "no running peer serves bases: none has images.peer_listen", nil
	}
	var names []string
	for _, pi := range all {
		if pi.Err != nil {
			names = append(names, pi.Server+" ("+pi.Err.Error()+")")
			continue
		}
		names = append(names, pi.Server)
		peers = append(peers, pi)
	}
	return peers, "asked " + strings.Join(names, ", "), nil
}

// choose picks what ref asks for among what peers listed: the base's
// digest, the versions to record and the peers to fetch it from (for a
// base, every peer: one may hold it unnamed).
func choose(ref string, peers []PeerImages) (digest string, versions []image.Image, holders []PeerImages, err error) {
	if d, ok := strings.CutPrefix(ref, "sha256:"); ok {
		if _, err := image.DigestBytes(d); err != nil {
			return "", nil, nil, err
		}
		seen := map[string]bool{}
		for _, pr := range peers {
			for _, im := range pr.Images {
				if im.Digest == d && !seen[im.Ref()] {
					seen[im.Ref()] = true
					versions = append(versions, im)
				}
			}
		}
		return d, versions, peers, nil
	}
	name, pin, err := image.ParseRef(ref)
	if err != nil {
		return "", nil, nil, err
	}
	var best *image.Image
	for _, pr := range peers {
		for _, im := range pr.Images {
			if im.Name != name || (pin != 0 && im.Version != pin) {
				continue
			}
			if best != nil && im.Version == best.Version && im.Digest != best.Digest {
				return "", nil, nil, fmt.Errorf("image %s names sha256:%.12s and sha256:%.12s on different peers: %w",
					im.Ref(), best.Digest, im.Digest, image.ErrVersionConflict)
			}
			if best == nil || im.Version > best.Version {
				best = &im
			}
		}
	}
	if best == nil {
		return "", nil, nil, nil
	}
	for _, pr := range peers {
		for _, im := range pr.Images {
			if im.Ref() == best.Ref() {
				holders = append(holders, pr)
				break
			}
		}
	}
	return best.Digest, []image.Image{*best}, holders, nil
}

// fetch gets the base from the first of holders that delivers it intact
// and returns that peer's name.
func (p *Puller) fetch(ctx context.Context, digest string, holders []PeerImages) (from string, err error) {
	err = p.once(ctx, "base "+digest, func(ctx context.Context) error {
		var errs []error
		notHeld := true
		for _, pr := range holders {
			err := p.cfg.Client.Fetch(ctx, pr.Addr, digest, p.cfg.Images)
			if err == nil {
				from = pr.Server
				p.log.Info("base fetched from a peer", "digest", digest, "peer", pr.Server)
				return nil
			}
			if !errors.Is(err, ErrNotHeld) {
				notHeld = false
				p.log.Warn("base fetch from a peer refused", "digest", digest, "peer", pr.Server, "error", err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", pr.Server, err))
		}
		if notHeld {
			return fmt.Errorf("base sha256:%s: %w", digest, ErrNotOnPeers)
		}
		return fmt.Errorf("base sha256:%s: no peer delivered it: %w", digest, errors.Join(errs...))
	})
	return from, err
}

// once starts fn for key on a goroutine of p, with p's context, unless
// a call for key is running, and waits for its result or for ctx.
func (p *Puller) once(ctx context.Context, key string, fn func(context.Context) error) error {
	p.mu.Lock()
	c, ok := p.pending[key]
	if !ok {
		if err := p.ctx.Err(); err != nil {
			p.mu.Unlock()
			return fmt.Errorf("base fetch: server closing: %w", err)
		}
		c = &call{done: make(chan struct{})}
		p.pending[key] = c
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			c.err = fn(p.ctx)
			p.mu.Lock()
			delete(p.pending, key)
			p.mu.Unlock()
			close(c.done)
		}()
	}
	p.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
