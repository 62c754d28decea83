package diskspace

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sealroot/sealroot/test/diskfull"
)

// On a real small filesystem the watch warns once when free space falls
// below the threshold, again after spaceWarnInterval, and says when it is
// back.
func TestSpaceWatchWarnsBeforeFull(t *testing.T) {
	dir := diskfull.Mount(t, 4<<20)
	var buf bytes.Buffer
	w := &Watch{Dir: dir, Low: 1 << 20, Logger: hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w.check(now)
	if buf.Len() != 0 {
		t.Fatalf("warned with space free:\n%s", buf.String())
	}
	free := diskfull.Fill(t, dir)
	w.check(now)
	w.check(now.Add(time.Minute)) // still low: no repeat yet
	if n := strings.Count(buf.String(), "nearly full"); n != 1 {
		t.Fatalf("%d warnings on a full filesystem, want 1:\n%s", n, buf.String())
	}
	w.check(now.Add(spaceWarnInterval))
	if n := strings.Count(buf.String(), "nearly full"); n != 2 {
		t.Fatalf("%d warnings after %v, want 2", n, spaceWarnInterval)
	}
	free()
	w.check(now.Add(spaceWarnInterval + time.Minute))
	if !strings.Contains(buf.String(), "has space again") {
		t.Fatalf("no all-clear once space returned:\n%s", buf.String())
	}
}
