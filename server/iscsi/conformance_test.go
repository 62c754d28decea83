package iscsi

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestConformance runs libiscsi's iscsi-test-cu against the target. It
// takes minutes, so it runs only with SEALROOT_CONFORMANCE=1. The last
// line it prints is "conformance: sealroot=<passed>/<total>".
func TestConformance(t *testing.T) {
	if os.Getenv("SEALROOT_CONFORMANCE") != "1" {
		t.Skip("set SEALROOT_CONFORMANCE=1 to run iscsi-test-cu (minutes)")
	}
	tool := needTool(t, "iscsi-test-cu")
	srv := &Server{Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn})}
	addr := startServer(t, srv, &Target{IQN: testIQN, LUN: newFileStore(t, 256<<20)})
	test := os.Getenv("SEALROOT_CONFORMANCE_TEST")
	if test == "" {
		test = "ALL"
	}
	start := time.Now()
	args := []string{"--dataloss", "--test=" + test, "iscsi://" + addr + "/" + testIQN + "/0"}
	if os.Getenv("SEALROOT_CONFORMANCE_VERBOSE") == "1" {
		args = append([]string{"-V"}, args...)
	}
	cmd := exec.Command(tool, args...)
	out, _ := cmd.CombinedOutput()
	if p := os.Getenv("SEALROOT_CONFORMANCE_LOG"); p != "" {
		os.WriteFile(p, out, 0o644)
	}
	passed, total := countResults(out)
	if total == 0 {
		t.Fatalf("iscsi-test-cu produced no results:\n%s", out)
	}
	t.Logf("iscsi-test-cu took %v", time.Since(start).Round(time.Second))
	t.Logf("conformance: sealroot=%d/%d", passed, total)
}

// countResults reads CUnit's "Run Summary" tests row: total, ran,
// passed, failed, inactive.
func countResults(out []byte) (passed, total int) {
	re := regexp.MustCompile(`^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			total, _ = strconv.Atoi(m[1])
			passed, _ = strconv.Atoi(m[3])
		}
	}
	return passed, total
}
