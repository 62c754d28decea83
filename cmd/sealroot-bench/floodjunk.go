package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/sealroot/sealroot/internal/cmdline"

	"github.com/spf13/cobra"
)

// junkStats is what the junk clients report.
type junkStats struct {
	Dials, Refused, Dropped uint64
	DropP50, DropMax        time.Duration // handshake to the server's close
}

// startJunk runs the junk clients in a child process (this binary's
// hidden flood-junk command) at nice --junk-nice: on a network the junk
// runs on other machines, so its own crypto should not be billed to the
// server. With --junk-nice -1 it runs in this process. The returned
// function stops it and returns its figures.
func startJunk(ctx context.Context, e *env, a benchFloodArgs, target string, sources []netip.Addr) (func() (*junkStats, error), error) {
	if a.junkNice < 0 {
		f, err := newFlooder(target, sources, a.dialRate)
		if err != nil {
			return nil, err
		}
		jctx, cancel := context.WithCancel(ctx)
		done := make(chan *junkStats, 1)
		go func() { done <- f.run(jctx, a) }()
		return func() (*junkStats, error) {
			cancel()
			st := <-done
			f.close()
			return st, nil
		}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	srcs := make([]string, len(sources))
	for i, s := range sources {
		srcs[i] = s.String()
	}
	cmd := exec.Command(self, "flood-junk", "--target", target, "--sources", strings.Join(srcs, ","),
		"--idle", fmt.Sprint(a.idle), "--half-open", fmt.Sprint(a.halfOpen), "--garbage", fmt.Sprint(a.garbage),
		"--dial-rate", fmt.Sprint(a.dialRate))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, e.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("junk process: %w", err)
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, a.junkNice); err != nil {
		fmt.Fprintf(e.Stderr, "sealroot-bench: nice junk process: %v\n", err)
	}
	return func() (*junkStats, error) {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("junk process: %w", err)
		}
		var st junkStats
		if err := json.Unmarshal(out.Bytes(), &st); err != nil {
			return nil, fmt.Errorf("junk process output %q: %w", out.String(), err)
		}
		return &st, nil
	}, nil
}

// newFloodJunkCmd is the child side of startJunk: it floods until its
// standard input closes, then prints its junkStats as JSON.
func newFloodJunkCmd() *cobra.Command {
	var a benchFloodArgs
	var target, sources string
	c := &cobra.Command{
		Use:    "flood-junk",
		Hidden: true,
		Args:   cmdline.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var srcs []netip.Addr
			for _, s := range strings.Split(sources, ",") {
				ip, err := netip.ParseAddr(s)
				if err != nil {
					return cmdline.Usagef(c, "--sources: %v", err)
				}
				srcs = append(srcs, ip)
			}
			f, err := newFlooder(target, srcs, a.dialRate)
			if err != nil {
				return err
			}
			defer f.close()
			ctx, cancel := context.WithCancel(c.Context())
			go func() {
				io.Copy(io.Discard, os.Stdin)
				cancel()
			}()
			return json.NewEncoder(c.OutOrStdout()).Encode(f.run(ctx, a))
		},
	}
	fl := c.Flags()
	fl.StringVar(&target, "target", "", "attestation service host:port")
	fl.StringVar(&sources, "sources", "", "comma-separated source addresses")
	fl.IntVar(&a.idle, "idle", 0, "idle connections")
	fl.IntVar(&a.halfOpen, "half-open", 0, "half-open connections")
	fl.IntVar(&a.garbage, "garbage", 0, "garbage connections")
	fl.IntVar(&a.dialRate, "dial-rate", 0, "dials per second at most")
	return c
}
