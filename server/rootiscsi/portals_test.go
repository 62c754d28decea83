package rootiscsi

import "testing"

// TestPortalConnLimit: every machine on an iSCSI root holds a connection
// for as long as it runs, so a portal's cap is the configured one, and by
// default DefaultMaxConns, far above the iSCSI server's own 256 (which
// refused the 257th machine of a boot storm).
func TestPortalConnLimit(t *testing.T) {
	for _, tc := range []struct{ given, want int }{{0, DefaultMaxConns}, {10000, 10000}} {
		var cfg Config
		ps, err := ListenPortals(&cfg, nil, 0, "127.0.0.1:0", tc.given, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := ps.plainSrv.MaxConns; got != tc.want {
			t.Errorf("ListenPortals(maxConns %d): portal cap %d, want %d", tc.given, got, tc.want)
		}
		ps.Close()
	}
	if DefaultMaxConns < 1000 {
		t.Errorf("DefaultMaxConns = %d: a room of 1,000 machines does not fit", DefaultMaxConns)
	}
}
