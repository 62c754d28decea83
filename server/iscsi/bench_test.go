package iscsi

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// BenchmarkIscsiPerf runs libiscsi's iscsi-perf at queue depth 32 for
// 5 seconds per case against a 256 MiB sparse file target (read load,
// page cache warm after the first pass) and reports MB/s and IOPS.
// Run with -benchtime=1x.
func BenchmarkIscsiPerf(b *testing.B) {
	tool := needTool(b, "iscsi-perf")
	addr := startServer(b, &Server{}, &Target{IQN: testIQN, LUN: newFileStore(b, 256<<20)})
	url := "iscsi://" + addr + "/" + testIQN + "/0"
	for _, bc := range []struct {
		name string
		args []string
	}{
		{"seq_32k", []string{"-m", "32", "-b", "64", "-t", "5"}},
		{"rand_4k", []string{"-m", "32", "-b", "8", "-r", "-t", "5"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				out, _ := exec.Command(tool, append(bc.args, url)...).CombinedOutput()
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

// parsePerf reads the last "iops average N (M MB/s)" iscsi-perf prints.
func parsePerf(out string) (mbs, iops float64) {
	for _, m := range regexp.MustCompile(`iops average (\d+) \((\d+) MB/s\)`).FindAllStringSubmatch(out, -1) {
		iops, _ = strconv.ParseFloat(m[1], 64)
		mbs, _ = strconv.ParseFloat(m[2], 64)
	}
	return mbs, iops
}
