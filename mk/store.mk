# mk/store.mk: state store benchmarks, included from the top Makefile.
#
#   make bench-store
#
# Lists 10,000 enrolled machines (goal: under a second) and runs the store
# reads and writes of an attestation from many machines at once with 10 and
# with 10,000 machines enrolled (goal: rate at 10,000 >= 0.9 of the rate at
# 10). Best of 3 runs each, as the host is shared. Last line:
# "store: list10000=<ms> attest10=<per s> attest10000=<per s> ratio=<x>".

GO ?= go

.PHONY: bench-store
bench-store:
	@mkdir -p build
	@$(GO) test -count=3 -run '^$$' -bench '^Benchmark(Machines|AttestationStore)$$' -benchtime 2s ./server/store/ \
		> build/bench-store.log 2>&1 || { cat build/bench-store.log; exit 1; }
	@grep '^Benchmark' build/bench-store.log
	@awk '/ms\/list/ { n=$$1; v=$$(NF-1); if (!(n in l) || v < l[n]) l[n]=v } \
		/attestations\/s/ { n=$$1; v=$$(NF-1); if (v > a[n]) a[n]=v } \
		END { for (k in l) if (k ~ /=10000/) L=l[k]; for (k in a) { if (k ~ /=10000/) A2=a[k]; else A1=a[k] } \
		printf "store: list10000=%.0fms attest10=%.0f/s attest10000=%.0f/s ratio=%.2f\n", L, A1, A2, A2/A1 }' build/bench-store.log
