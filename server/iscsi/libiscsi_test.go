package iscsi

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/test/testenv"
)

// runTool runs a libiscsi utility and returns its combined output.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testenv.LookTool(t, name), args...).CombinedOutput()
	return string(out), err
}

func TestLibiscsiTools(t *testing.T) {
	addr := startServer(t, &Server{}, &Target{IQN: testIQN, LUN: newFileStore(t, 64<<20)})
	url := "iscsi://" + addr + "/" + testIQN + "/0"
	tests := []struct {
		name, tool string
		args       []string
		want       string
	}{
		{"inquiry", "iscsi-inq", []string{url}, "Vendor:SEALROOT"},
		{"vpd_pages", "iscsi-inq", []string{"-e", "1", url}, "Page:0xb2 LOGICAL_BLOCK_PROVISIONING"},
		{"read_capacity16", "iscsi-readcapacity16", []string{url}, "LBPME:1 LBPRZ:1"},
		{"discovery", "iscsi-ls", []string{"iscsi://" + addr}, "Target:" + testIQN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTool(t, tt.tool, tt.args...)
			if err != nil || !strings.Contains(out, tt.want) {
				t.Errorf("%s %v = %v, want output containing %q:\n%s", tt.tool, tt.args, err, tt.want, out)
			}
		})
	}
}

func TestLibiscsiCHAP(t *testing.T) {
	const user, secret, tuser, tsecret = "machine-a", "a1b2c3d4e5f6a7b8c9d0", "sealroot", "f0e1d2c3b4a5968778695a4b"
	one := &Target{IQN: testIQN, LUN: newFileStore(t, 1<<20), Auth: &pdu.CHAP{User: user, Secret: secret}}
	mutualIQN := testIQN + "-mutual"
	mutual := &Target{IQN: mutualIQN, LUN: newFileStore(t, 1<<20),
		Auth: &pdu.CHAP{User: user, Secret: secret, TargetUser: tuser, TargetSecret: tsecret}}
	addr := startServer(t, &Server{}, one, mutual)
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"chap_success", "iscsi://" + user + "%" + secret + "@" + addr + "/" + testIQN + "/0", true},
		{"chap_wrong_secret", "iscsi://" + user + "%wrongsecret00000@" + addr + "/" + testIQN + "/0", false},
		{"chap_missing", "iscsi://" + addr + "/" + testIQN + "/0", false},
		{"mutual_success", "iscsi://" + user + "%" + secret + "@" + addr + "/" + mutualIQN + "/0?target_user=" + tuser + "&target_password=" + tsecret, true},
		{"mutual_wrong_target_secret", "iscsi://" + user + "%" + secret + "@" + addr + "/" + mutualIQN + "/0?target_user=" + tuser + "&target_password=impostor00000000", false},
		{"mutual_not_requested", "iscsi://" + user + "%" + secret + "@" + addr + "/" + mutualIQN + "/0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTool(t, "iscsi-inq", tt.url)
			if got := err == nil && strings.Contains(out, "SEALROOT"); got != tt.ok {
				t.Errorf("iscsi-inq with %s: succeeded %v, want %v (%v):\n%s", tt.name, got, tt.ok, err, out)
			}
		})
	}
}

func TestDiscoveryListsOnlyAllowedTargets(t *testing.T) {
	deny := func(net.Addr, string) bool { return false }
	addr := startServer(t, &Server{},
		&Target{IQN: testIQN, LUN: newFileStore(t, 1<<20)},
		&Target{IQN: testIQN + "-hidden", LUN: newFileStore(t, 1<<20), AllowInitiator: deny})
	out, err := runTool(t, "iscsi-ls", "iscsi://"+addr)
	if err != nil || !strings.Contains(out, testIQN) || strings.Contains(out, "-hidden") {
		t.Errorf("iscsi-ls = %v, want only %s listed:\n%s", err, testIQN, out)
	}
	out, err = runTool(t, "iscsi-inq", "iscsi://"+addr+"/"+testIQN+"-hidden/0")
	if err == nil {
		t.Errorf("iscsi-inq on a target that refuses the initiator succeeded:\n%s", out)
	}
}
