package tunnel

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sealroot/sealroot/test/netnstest"
)

// The kernel engine understands every UAPI "set" Tunnel writes (device
// keys, a replaced peer, a restored endpoint) and answers "get" in the
// form parsePeers reads.
func TestKernelUAPITranslation(t *testing.T) {
	priv, _ := wgtypes.GeneratePrivateKey()
	oldKey, newKey := wgtypes.Key{1}, wgtypes.Key{2}
	tn := &Tunnel{cfg: Config{Keepalive: 10 * time.Second}}
	var b strings.Builder
	b.WriteString("private_key=" + hexKey(priv[:]) + "\nlisten_port=51820\n")
	b.WriteString("public_key=" + hexKey(oldKey[:]) + "\nremove=true\n")
	tn.writePeer(&b, newKey[:], netip.MustParseAddr("10.200.0.7"))
	b.WriteString("endpoint=192.168.77.2:41000\n")

	cfg, err := parseUAPISet(b.String())
	if err != nil {
		t.Fatalf("parseUAPISet = %v", err)
	}
	if cfg.PrivateKey == nil || *cfg.PrivateKey != priv || cfg.ListenPort == nil || *cfg.ListenPort != 51820 {
		t.Errorf("device keys = %v, %v; want the private key and port 51820", cfg.PrivateKey, cfg.ListenPort)
	}
	if len(cfg.Peers) != 2 || cfg.Peers[0].PublicKey != oldKey || !cfg.Peers[0].Remove {
		t.Fatalf("peers = %+v, want the old peer removed first", cfg.Peers)
	}
	p := cfg.Peers[1]
	if p.PublicKey != newKey || p.Remove || !p.ReplaceAllowedIPs || len(p.AllowedIPs) != 1 ||
		p.AllowedIPs[0].String() != "10.200.0.7/32" || p.PersistentKeepaliveInterval == nil ||
		*p.PersistentKeepaliveInterval != 10*time.Second || p.Endpoint == nil || p.Endpoint.String() != "192.168.77.2:41000" {
		t.Errorf("new peer = %+v, want key 2, only 10.200.0.7/32, keepalive 10s, endpoint 192.168.77.2:41000", p)
	}
	for _, bad := range []string{"private_key=zz", "listen_port=70000", "public_key=" + hexKey(newKey[:]) + "\nallowed_ip=nope",
		"fwmark=1", "no equals sign"} {
		if _, err := parseUAPISet(bad); err == nil {
			t.Errorf("parseUAPISet(%q) = nil error, want one", bad)
		}
	}

	hs := time.Unix(1800000000, 5).UTC()
	get := formatUAPIGet(&wgtypes.Device{ListenPort: 51820, Peers: []wgtypes.Peer{{
		PublicKey: newKey, Endpoint: p.Endpoint, LastHandshakeTime: hs, ReceiveBytes: 10, TransmitBytes: 20,
	}}})
	if strings.Contains(get, hexKey(priv[:])) {
		t.Error("get answer holds the private key")
	}
	peers := parsePeers(get)
	dp, ok := peers[string(newKey[:])]
	if !ok || !dp.LastHandshake.Equal(hs) || dp.RxBytes != 10 || dp.TxBytes != 20 || dp.Endpoint.String() != "192.168.77.2:41000" {
		t.Errorf("parsePeers(formatUAPIGet) = %+v, %v", dp, ok)
	}
}

// The wireguard-go fallback's TUN device has its offloads on (IFF_VNET_HDR
// with TSO/USO: batches of segments instead of one packet per read).
func TestTUNOffloads(t *testing.T) {
	ns := netnstest.New(t, "srtun-off")
	err := ns.Do(func() error {
		cfg := Config{Prefix: prefix, UseTUN: true, Userspace: true, Interface: "srtoff0", MTU: DefaultMTU}
		_, dev, err := newNetif(cfg, serverAddr(prefix))
		if err != nil {
			return err
		}
		defer dev.Close()
		if n := dev.BatchSize(); n <= 1 {
			t.Errorf("TUN batch size = %d, want > 1 (offloads on)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
