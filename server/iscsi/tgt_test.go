package iscsi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/test/testenv"
)

// tgtIQN is the target the reference tgtd serves; its LUN 1 is the
// backing file (LUN 0 is tgt's controller).
const tgtIQN = "iqn.2026-01.org.sealroot:tgt"

// tgtURL is the reference target as seen inside runWithTgt's namespace.
const tgtURL = "iscsi://127.0.0.1:3260/" + tgtIQN + "/1"

// runWithTgt runs script next to the reference userspace target tgtd
// (Debian tgt), in fresh unprivileged user, mount and network
// namespaces: tgtd serves a 256 MiB sparse file on 127.0.0.1:3260 of
// that namespace, script runs there, then tgtd is killed (it ignores
// SIGTERM). It returns the script's combined output.
func runWithTgt(t testing.TB, script string) string {
	t.Helper()
	for _, tool := range []string{"unshare", "tgtd", "tgtadm", "ip"} {
		testenv.LookTool(t, tool)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "tgt.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	full := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run && mkdir /run/tgtd && ip link set lo up
tgtd -f --iscsi portal=127.0.0.1:3260 >%[1]s/tgtd.log 2>&1 &
TGTD=$!
trap 'kill -9 $TGTD' EXIT
for i in $(seq 100); do tgtadm --lld iscsi --op show --mode system >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm --lld iscsi --op new --mode target --tid 1 -T %[2]s
tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b %[3]s
tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL
set +e
%[4]s
true
`, dir, tgtIQN, img, script)
	out, err := exec.Command("unshare", "-Urnm", "sh", "-c", full).CombinedOutput()
	if err != nil {
		t.Fatalf("tgt script: %v\n%s", err, out)
	}
	return string(out)
}

// tgtConformance runs iscsi-test-cu families against tgt.
func tgtConformance(t *testing.T, families []string) (passed, total int) {
	dir := t.TempDir()
	var script strings.Builder
	for _, f := range families {
		fmt.Fprintf(&script, "iscsi-test-cu --dataloss --test=%s %s >%s/%s.log 2>&1\n", f, tgtURL, dir, f)
	}
	runWithTgt(t, script.String())
	for _, f := range families {
		out, err := os.ReadFile(filepath.Join(dir, f+".log"))
		if err != nil {
			t.Fatal(err)
		}
		p, n := countResults(out)
		t.Logf("tgt %s: %d/%d", f, p, n)
		passed, total = passed+p, total+n
	}
	return passed, total
}
