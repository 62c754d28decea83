// Package metricstest serves a real metrics endpoint in tests and reads
// samples from its scrapes.
package metricstest

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/metrics"
)

// Serve serves m on a loopback port until the test ends and returns a
// function that scrapes /metrics once.
func Serve(t testing.TB, m *metrics.Metrics) func() string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() string {
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// Sample returns the value of the series (name with its labels, exactly
// as exposed) in a scrape body, or -1 when it is absent.
func Sample(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}
