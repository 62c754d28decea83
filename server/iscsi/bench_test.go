package iscsi

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// perfCases are the iscsi-perf loads of issue 4: queue depth 32,
// sequential 32 KiB and random 4 KiB reads, 5 seconds each.
var perfCases = []struct {
	name string
	args []string
}{
	{"seq_32k", []string{"-m", "32", "-b", "64", "-t", "5"}},
	{"rand_4k", []string{"-m", "32", "-b", "8", "-r", "-t", "5"}},
}

// BenchmarkIscsiPerf runs libiscsi's iscsi-perf against the target on
// a 256 MiB sparse file and reports MB/s and IOPS. Run with
// -benchtime=1x.
func BenchmarkIscsiPerf(b *testing.B) {
	tool := testenv.LookTool(b, "iscsi-perf")
	addr := startServer(b, &Server{}, &Target{IQN: testIQN, LUN: newFileStore(b, 256<<20)})
	url := "iscsi://" + addr + "/" + testIQN + "/0"
	for _, pc := range perfCases {
		b.Run(pc.name, func(b *testing.B) {
			for b.Loop() {
				out, _ := exec.Command(tool, append(pc.args, url)...).CombinedOutput()
				mbs, iops := parsePerf(string(out))
				if iops == 0 {
					b.Fatalf("iscsi-perf reported nothing:\n%s", out)
				}
				b.ReportMetric(mbs, "MB/s")
				b.ReportMetric(iops, "IOPS")
			}
		})
	}
}

// BenchmarkIscsiPerfVsTgt runs the same loads against sealroot's
// target and tgt (same sparse-file setup, one after the other) and
// prints "ratio: seq=<sealroot/tgt> rand=<sealroot/tgt>" (IOPS).
// Run with -benchtime=1x.
func BenchmarkIscsiPerfVsTgt(b *testing.B) {
	tool := testenv.LookTool(b, "iscsi-perf")
	addr := startServer(b, &Server{}, &Target{IQN: testIQN, LUN: newFileStore(b, 256<<20)})
	url := "iscsi://" + addr + "/" + testIQN + "/0"
	for b.Loop() {
		var ratios []string
		for _, pc := range perfCases {
			out, _ := exec.Command(tool, append(pc.args, url)...).CombinedOutput()
			mbs, iops := parsePerf(string(out))
			tout := runWithTgt(b, "iscsi-perf "+strings.Join(pc.args, " ")+" "+tgtURL)
			tmbs, tiops := parsePerf(tout)
			if iops == 0 || tiops == 0 {
				b.Fatalf("iscsi-perf reported nothing:\nsealroot:\n%s\ntgt:\n%s", out, tout)
			}
			fmt.Printf("%s: sealroot %.0f MB/s %.0f IOPS, tgt %.0f MB/s %.0f IOPS\n", pc.name, mbs, iops, tmbs, tiops)
			ratios = append(ratios, fmt.Sprintf("%s=%.2f", strings.SplitN(pc.name, "_", 2)[0], iops/tiops))
		}
		fmt.Println("ratio: " + strings.Join(ratios, " "))
	}
}

// parsePerf reads the last "iops average N (M MB/s)" iscsi-perf prints.
func parsePerf(out string) (mbs, iops float64) {
	for _, m := range regexp.MustCompile(`iops average (\d+) \((\d+) MB/s\)`).FindAllStringSubmatch(out, -1) {
		iops, _ = strconv.ParseFloat(m[1], 64)
		mbs, _ = strconv.ParseFloat(m[2], 64)
	}
	return mbs, iops
}
