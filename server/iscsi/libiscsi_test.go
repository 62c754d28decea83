package iscsi

import (
	"os/exec"
	"strings"
	"testing"
)

func TestLibiscsiTools(t *testing.T) {
	inq := needTool(t, "iscsi-inq")
	addr := startServer(t, &Server{}, &Target{IQN: testIQN, LUN: newFileStore(t, 64<<20)})
	url := "iscsi://" + addr + "/" + testIQN + "/0"
	out, err := exec.Command(inq, url).CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.Contains(string(out), "SEALROOT") {
		t.Fatalf("iscsi-inq %s = %v", url, err)
	}
}
