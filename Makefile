# sealroot build, test and demo entry points. Everything a fresh Debian 12
# machine needs is installed by `make deps` (run as root).

GO        ?= go
GOFLAGS   ?= -mod=readonly
export GOFLAGS
BUILD     := build
DEB_PKGS  := build-essential libssl-dev libpam0g-dev swtpm swtpm-tools qemu-system-x86 ovmf ipxe sbsigntool efitools \
             libiscsi-bin tgt e2fsprogs xfsprogs btrfs-progs busybox-static strace iproute2 cpio kmod systemd-boot-efi binutils \
             nfs-ganesha nfs-ganesha-vfs libnfs-utils ca-certificates debootstrap
FUZZTIME  ?= 10s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed 's/^v//' || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
VERSION_LDFLAGS := -X github.com/sealroot/sealroot/version.version=$(VERSION) -X github.com/sealroot/sealroot/version.commit=$(COMMIT)

.PHONY: all deps build agent test test-go fuzz vm-test bench bench-etcd bench-cluster bench-flood bench-storm bench-iscsi bench-tunnel bench-roots iscsi-conformance demo clean

all: build

# deps installs Debian packages idempotently: apt-get runs only when one is
# missing. Go modules are pinned in go.mod/go.sum and fetched by `go mod download`.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi
	$(GO) mod download

build: agent
	$(GO) build -ldflags='$(VERSION_LDFLAGS)' -o $(BUILD)/sealroot ./cmd/sealroot

# The agent runs as /init in the initramfs: static, no cgo, small.
agent:
	CGO_ENABLED=0 GOAMD64=v1 $(GO) build -trimpath -ldflags='-s -w -buildid= $(VERSION_LDFLAGS)' -o $(BUILD)/sealroot-agent ./cmd/sealroot-agent

# test: vet, every Go test (fuzz seed corpora included), as the README says.
test: test-go

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# fuzz runs every fuzz target for FUZZTIME each (not part of `make test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# vm-test runs the VM tests VM_PARALLEL at a time: each QEMU guest runs
# TCG on its own thread, so on two cores two guests boot side by side.
VM_PARALLEL ?= 2
vm-test:
	$(GO) test -count=1 -timeout 40m -v -parallel $(VM_PARALLEL) ./vm-tests -vm

# bench: server-side micro-benchmarks, then the attestation rate with boot
# history and metrics on against off: BenchmarkObservability runs a plain
# and an observed server (history.Recorder and metrics.Metrics, as the
# daemon wires them) in 200 interleaved rounds of 64 attestations in one
# process and prints the median of the per-round ratios of CPU time per
# attestation plain/observed (= observed rate / plain rate; line
# "observability: ..."; CPU time, which a machine shared with other work
# disturbs less than the rate), then the end-to-end load test over QUIC
# with its refused-hello baseline (client and server share the CPUs).
bench:
	@mkdir -p $(BUILD)
	$(GO) test -run XXX -bench . -skip '^Benchmark(Attestation|Observability)$$' -benchtime 2s ./server/attest/ ./server/seal/ ./server/attest/evidence/ ./server/eventlog/ ./server/store/ ./server/audit/
	@$(GO) test -run XXX -bench '^Benchmark(Attestation|Observability)$$' -benchtime 12800x ./server/attest/ > $(BUILD)/bench-attest.log 2>&1 \
		|| { cat $(BUILD)/bench-attest.log; exit 1; }
	@grep -E '^Benchmark(Attestation|Observability)' $(BUILD)/bench-attest.log
	@awk '/^BenchmarkObservability/ { for (i = 3; i < NF; i++) v[$$(i+1)] = $$i } \
		END { if (v["median-ratio"]) printf "observability: cpu-us/op plain=%.0f observed=%.0f; ratio plain/observed (observed rate / plain rate) median=%.3f quartiles %.3f-%.3f over %d interleaved rounds\n", \
			v["plain-cpu-us/op"], v["observed-cpu-us/op"], v["median-ratio"], v["q1-ratio"], v["q3-ratio"], v["rounds"] }' $(BUILD)/bench-attest.log
	$(GO) run ./cmd/sealroot-bench attest -n 2000 -c 32

# bench-etcd runs the store operations of one attestation (Machine,
# Secrets, UpdateMachine; 16 exchanges per CPU, 500 machines) on bbolt and
# on etcd (embedded: etcd_one one member, etcd_three three) in the same run, and prints the
# rates and the etcd/bbolt ratios (line "store: ...").
bench-etcd:
	@mkdir -p $(BUILD)
	@$(GO) test -count=1 -run XXX -bench '^BenchmarkAttestationBackends$$' -benchtime 2000x ./server/store/ \
		> $(BUILD)/bench-etcd.log 2>&1 || { cat $(BUILD)/bench-etcd.log; exit 1; }
	@grep '^BenchmarkAttestationBackends/' $(BUILD)/bench-etcd.log
	@awk '/^BenchmarkAttestationBackends\// { split($$1, p, "/"); sub(/-[0-9]+$$/, "", p[2]); \
			for (i = 3; i < NF; i++) if ($$(i+1) == "attestations/s") r[p[2]] = $$i } \
		END { if (r["bbolt"] && r["etcd_one"] && r["etcd_three"]) printf "store: attestations/s bbolt=%.0f etcd_one=%.0f etcd_three=%.0f ratio etcd_one/bbolt=%.3f etcd_three/bbolt=%.3f\n", \
			r["bbolt"], r["etcd_one"], r["etcd_three"], r["etcd_one"]/r["bbolt"], r["etcd_three"]/r["bbolt"] }' $(BUILD)/bench-etcd.log

# bench-cluster runs full attestations over QUIC (software TPMs) against
# two servers on one three-member etcd, all in one process: one_server
# (16 machines at A) then two_servers (8 at A, 8 at B, each at its home),
# three rounds, and prints the mean aggregate rates and their ratio (line
# "cluster: ..."), with the CPUs and the load average: on one host the
# servers, clients and etcd share the CPUs, so ~1 on two cores says
# nothing of two machines.
bench-cluster:
	@mkdir -p $(BUILD)
	@$(GO) test -count=3 -run XXX -bench '^BenchmarkClusterAttestation$$' -benchtime 500x ./server/ \
		> $(BUILD)/bench-cluster.log 2>&1 || { cat $(BUILD)/bench-cluster.log; exit 1; }
	@grep '^BenchmarkClusterAttestation/' $(BUILD)/bench-cluster.log
	@awk '/^BenchmarkClusterAttestation\// { split($$1, p, "/"); sub(/-[0-9]+$$/, "", p[2]); k[p[2]]++; \
			for (i = 3; i < NF; i++) { if ($$(i+1) == "attestations/s") r[p[2]] += $$i; if ($$(i+1) == "load1") l[p[2]] += $$i; if ($$(i+1) == "procs") n = $$i } } \
		END { o = "one_server"; w = "two_servers"; if (k[o] && k[w]) printf "cluster: attestations/s one_server=%.0f two_servers=%.0f ratio two/one=%.3f (means of %d rounds; one host: %d CPUs shared by servers, clients and etcd; load1 %.2f and %.2f)\n", \
			r[o]/k[o], r[w]/k[w], (r[w]/k[w])/(r[o]/k[o]), k[o], n, l[o]/k[o], l[w]/k[w] }' $(BUILD)/bench-cluster.log

# bench-flood holds 1,000 idle, 1,000 half-open and 1,000 garbage QUIC
# connections against an in-process daemon with its default limits, from
# 127.0.0.2 and then from 32 loopback addresses, while one simulated machine
# attests from 127.0.0.1; last line "flood: attest p99 during/before=X".
bench-flood:
	@mkdir -p $(BUILD)
	@$(GO) run ./cmd/sealroot-bench flood | tee $(BUILD)/bench-flood.log

# bench-storm powers on STORM machines at once (default 50, 200 and 1000,
# one run each) against one real `sealroot serve` in network namespaces
# (root): TFTP, HTTP, attestation with a software TPM each that opens its
# sealed credential, WireGuard tunnel, iSCSI login with the credential's
# mutual CHAP and a read of STORM_ROOT_READ MiB of the root (default 38,
# a Debian 12 boot's as vm TestDistroRoot measured it, in that boot's READ
# sizes) over the tunnel; per run p50/p99 per phase, retries, server RSS and CPU
# per machine (and idle before the storms), bytes against plain veth
# throughput; a "cpu floor" line (the CPU of the server, its nfs-ganesha
# and the simulated machines over the host's cores: the shortest wall one
# host allows) and the wall over the higher of that floor and the bytes
# alone; last line
# "storm: machines=N ready=R failures=F wall=Ws limit_ratio=X".
# STORM_DHCP picks how machines find their boot files: proxy (the default,
# as the server's boot.dhcp_mode: the machines have their addresses and ask
# the server's ProxyDHCP, firmware PXE a DISCOVER..OFFER, iPXE one more
# REQUEST..ACK on port 4011); full (they lease their addresses from the
# server's full DHCP: firmware PXE, iPXE and the agent each DISCOVER..ACK,
# a pool of one address per machine, ARP probes); none (no DHCP, they start
# at TFTP).
# STORM_ROOT=nfs: NFSv4 roots (the server's nfs-ganesha, one export per
# machine) mounted as NFSv4.2 over each tunnel and read, instead of iSCSI.
STORM ?= 50,200,1000
STORM_ROOT_READ ?=
STORM_DHCP ?=
STORM_ROOT ?=
bench-storm:
	@mkdir -p $(BUILD)
	@SEALROOT_STORM=$(STORM) SEALROOT_STORM_ROOT_READ=$(STORM_ROOT_READ) SEALROOT_STORM_DHCP=$(STORM_DHCP) SEALROOT_STORM_ROOT=$(STORM_ROOT) $(GO) test -count=1 -timeout 60m -run '^TestStorm$$' -v ./test/storm/ \
		> $(BUILD)/bench-storm.log 2>&1 || { grep -v 'serve: ' $(BUILD)/bench-storm.log | tail -50; exit 1; }
	@grep -E '^(storm|  )' $(BUILD)/bench-storm.log | grep -v 'serve: '

# iscsi-conformance runs libiscsi's iscsi-test-cu (all four families) against
# sealroot's target and against tgt on the same kind of file; last line:
# "conformance: sealroot=<passed>/<total> tgt=<passed>/<total>".
iscsi-conformance:
	@mkdir -p $(BUILD)
	@SEALROOT_CONFORMANCE=1 SEALROOT_CONFORMANCE_TGT=1 $(GO) test -count=1 -v -timeout 20m -run TestConformance ./server/iscsi/ \
		> $(BUILD)/iscsi-conformance.log 2>&1 || { cat $(BUILD)/iscsi-conformance.log; exit 1; }
	@grep -o 'conformance: sealroot=.*' $(BUILD)/iscsi-conformance.log | tail -1

# bench-iscsi runs iscsi-perf (32 KiB sequential, 4 KiB random, QD 32) against
# sealroot's target and tgt on the same file; last line "ratio: seq=... rand=...".
bench-iscsi:
	@mkdir -p $(BUILD)
	@$(GO) test -count=1 -run XXX -bench IscsiPerfVsTgt -benchtime 1x ./server/iscsi/ \
		> $(BUILD)/bench-iscsi.log 2>&1 || { cat $(BUILD)/bench-iscsi.log; exit 1; }
	@grep -E 'MB/s|IOPS' $(BUILD)/bench-iscsi.log | grep -v '^Benchmark'; grep -o 'ratio: .*' $(BUILD)/bench-iscsi.log | tail -1

# bench-tunnel compares the WireGuard tunnel with plain TCP over the same veth:
# raw TCP, then root I/O (iscsi-perf against one target and file on both
# portals); last line "ratio: tunnel/plain=<x>", iSCSI sequential MB/s.
bench-tunnel:
	@mkdir -p $(BUILD)
	@$(GO) test -count=1 -run '^$$' -bench '^BenchmarkThroughput$$' -benchtime 3x ./server/tunnel/ \
		> $(BUILD)/bench-tunnel.log 2>&1 || { cat $(BUILD)/bench-tunnel.log; exit 1; }
	@$(GO) test -count=1 -run '^$$' -bench '^BenchmarkISCSIThroughTunnel$$' -benchtime 1x ./server/tunnel/ \
		> $(BUILD)/bench-tunnel-iscsi.log 2>&1 || { cat $(BUILD)/bench-tunnel-iscsi.log; exit 1; }
	@grep -o 'BenchmarkThroughput/[a-z]*: plain .*MB/s' $(BUILD)/bench-tunnel.log | sed 's/^BenchmarkThroughput/tcp/' | tac | sort -s -u -t: -k1,1
	@grep -o '^iscsi [a-z0-9_]*: plain .*' $(BUILD)/bench-tunnel-iscsi.log; grep -o '^ratio: tunnel/plain=.*' $(BUILD)/bench-tunnel-iscsi.log | tail -1

# bench-roots boots two VMs (QEMU TCG) whose roots come over the WireGuard
# tunnel, one iSCSI and one NFSv4.2, reads a 64 MiB file of the base and
# writes 32 MiB from inside each; prints both side by side with the ratio
# nfs/iscsi (about 2 minutes).
bench-roots:
	@mkdir -p $(BUILD)
	@SEALROOT_BENCH=1 $(GO) test -count=1 -timeout 40m -run '^TestRootThroughput$$' -v ./vm-tests -vm \
		> $(BUILD)/bench-roots.log 2>&1 || { tail -100 $(BUILD)/bench-roots.log; exit 1; }
	@grep -A2 '^root throughput' $(BUILD)/bench-roots.log

-include mk/*.mk

clean:
	rm -rf $(BUILD)
