package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/pki"
	"github.com/sealroot/sealroot/test/loadgen/tempserver"
)

// benchLines are the lines of `sealroot-bench attest`, with the figures
// as groups.
var benchLines = []*regexp.Regexp{
	regexp.MustCompile(`^bench attest: 20 attestations, concurrency 4, 4 machines, server in-process on 127\.0\.0\.1:\d+$`),
	regexp.MustCompile(`^baseline \(QUIC handshake \+ refused hello\): ([0-9.]+) conn/s  p50 ([0-9.]+)ms  p99 ([0-9.]+)ms  cpu ([0-9.]+)ms/op$`),
	regexp.MustCompile(`^attest  \(full attestation, credential sealed\): ([0-9.]+) attestations/s  p50 ([0-9.]+)ms  p99 ([0-9.]+)ms  cpu ([0-9.]+)ms/op$`),
	regexp.MustCompile(`^ratio: attest/baseline throughput=([0-9.]+)$`),
	regexp.MustCompile(`^note: the simulated agents \(software TPM\) run on this machine's \d+ CPUs: figures include their CPU \(cpu: server and agents\)$`),
	regexp.MustCompile(`^software TPM \(a real TPM's own work: activation, quote, unseal\): cpu ([0-9.]+)ms/attestation; attest without it: cpu ([0-9.]+)ms/op; ratio baseline/attest cpu without it=([0-9.]+)$`),
	regexp.MustCompile(`^goal 0\.5: (?:not )?reached by the cpu ratio without the software TPM \(([0-9.]+)\); (?:not )?reached by the throughput ratio \(([0-9.]+)\), which also pays for the software TPMs on these \d+ CPUs$`),
}

func TestBenchAttestInProcess(t *testing.T) {
	r := runBench(t, filepath.Join(t.TempDir(), "unused.sock"), "attest", "-n", "20", "-c", "4")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(benchLines) {
		t.Fatalf("output has %d lines, want %d:\n%s", len(lines), len(benchLines), r.stdout)
	}
	for i, re := range benchLines {
		m := re.FindStringSubmatch(lines[i])
		if m == nil {
			t.Errorf("line %d = %q, want it to match %s", i+1, lines[i], re)
			continue
		}
		for _, f := range m[1:] {
			if v, err := strconv.ParseFloat(f, 64); err != nil || v <= 0 {
				t.Errorf("line %d: figure %q is not a positive number", i+1, f)
			}
		}
	}
}

func TestBenchAttestJSON(t *testing.T) {
	r := runBench(t, filepath.Join(t.TempDir(), "unused.sock"), "--json", "attest", "-n", "6", "-c", "1", "--machines", "1")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var rep struct {
		Count, Concurrency, Machines int
		Baseline, Attest             struct {
			Count, Errors int
			PerSecond     float64 `json:"per_second"`
		}
		Ratio     float64
		Goal      float64
		Server    string
		InProcess bool `json:"in_process"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout %q does not parse: %v", r.stdout, err)
	}
	if rep.Count != 6 || rep.Concurrency != 1 || rep.Machines != 1 || rep.Attest.Count != 6 || rep.Attest.Errors != 0 ||
		rep.Baseline.Count != 6 || rep.Attest.PerSecond <= 0 || rep.Ratio <= 0 || rep.Goal != 0.5 ||
		!rep.InProcess || !strings.HasPrefix(rep.Server, "127.0.0.1:") {
		t.Errorf("report = %+v, want 6 attestations at concurrency 1 by 1 machine in-process, no errors, a ratio", rep)
	}
}

// Against a running server: the simulated machines are approved over the
// admin socket, then forgotten.
func TestBenchAttestRemote(t *testing.T) {
	s, err := tempserver.Start(context.Background(), nil)
	if err != nil {
		t.Fatalf("tempserver: %v", err)
	}
	defer s.Close()
	r := runBench(t, s.Socket, "attest", "-n", "4", "-c", "2",
		"--server", s.Target.Addr, "--ca", s.CAFile, "--server-name", tempserver.ServerName)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "2 machines, server "+s.Target.Addr+"\n") || !strings.Contains(r.stdout, "ratio: ") {
		t.Errorf("stdout lacks the server or the ratio:\n%s", r.stdout)
	}
	if !strings.HasSuffix(r.stdout, "goal 0.5: not judged: the remote server's CPU is not in these figures\n") {
		t.Errorf("stdout judges the goal without the server's CPU:\n%s", r.stdout)
	}
	if ms, err := s.Admin().Machines(context.Background()); err != nil || len(ms) != 0 {
		t.Errorf("%d machines left on the server (%v), want the simulated ones forgotten", len(ms), err)
	}

	// Pinning another CA: no machine gets through, the command fails.
	other := t.TempDir()
	if err := pki.Init(other, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r = runBench(t, s.Socket, "attest", "-n", "2", "-c", "1",
		"--server", s.Target.Addr, "--ca", filepath.Join(other, pki.CACertFile))
	if r.code != 1 || !strings.Contains(r.stderr, "certificate signed by unknown authority") {
		t.Errorf("with another CA: exit %d, stderr %q; want 1 and a certificate error", r.code, r.stderr)
	}
}

func TestBenchAttestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"zero_count", []string{"-n", "0"}, "count 0"},
		{"zero_concurrency", []string{"-c", "0"}, "concurrency 0"},
		{"too_concurrent", []string{"-c", "1025"}, "concurrency 1025"},
		{"zero_machines", []string{"--machines", "0"}, "--machines 0"},
		{"fewer_machines_than_concurrency", []string{"-c", "4", "--machines", "2"}, "at least the concurrency 4"},
		{"ca_without_server", []string{"--ca", "ca.crt"}, "need --server"},
		{"server_without_ca", []string{"--server", "127.0.0.1:4433"}, "--server needs --ca"},
		{"server_without_port", []string{"--server", "127.0.0.1", "--ca", "ca.crt"}, "missing port"},
		{"extra_argument", []string{"now"}, "takes at most 0 argument"},
		{"not_a_number", []string{"-n", "many"}, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBench(t, "unused.sock", append([]string{"attest"}, tt.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "Usage:") {
				t.Errorf("exit %d, stderr %q; want 2, %q and the usage", r.code, r.stderr, tt.want)
			}
		})
	}
	if r := runBench(t, "unused.sock"); r.code != 2 {
		t.Errorf("no command: exit %d, want 2", r.code)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// runBench runs sealroot-bench in-process with --socket socket.
func runBench(t *testing.T, socket string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--socket", socket}, args...)
	code := run(context.Background(), args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}
