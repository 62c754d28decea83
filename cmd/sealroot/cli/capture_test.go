package cli_test

import (
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
)

// The capture itself is tested in server/machines (TestCaptureImage)
// over real images, volumes and iSCSI sessions; here the command line.
func TestImageCaptureCommand(t *testing.T) {
	svc := apitest.NewService(t, testMachines()...)
	sock := apitest.Serve(t, svc, api.WithCapture(svc))
	if r := run(t, sock, "", "image", "capture", "tpl"); r.code != 1 || !strings.Contains(r.stderr, "--from MACHINE is required") {
		t.Errorf("capture without --from: %+v", r)
	}
	if r := run(t, sock, "", "image", "capture"); r.code != 2 {
		t.Errorf("capture without a name: %+v", r)
	}
	// This service keeps no images: the server says so, nothing panics.
	if r := run(t, sock, "", "image", "capture", "tpl", "--from", idA); r.code != 1 || !strings.Contains(r.stderr, "no images") {
		t.Errorf("capture on a server without images: %+v", r)
	}
}

// The pull itself is tested in server/basepeer and server
// (TestServersMoveBases) between real servers; here the command line.
func TestImagePullCommand(t *testing.T) {
	svc := apitest.NewService(t, testMachines()...)
	sock := apitest.Serve(t, svc, api.WithPull(svc))
	if r := run(t, sock, "", "image", "pull"); r.code != 2 {
		t.Errorf("pull without a reference: %+v", r)
	}
	// A server of its own: it says it shares no store.
	if r := run(t, sock, "", "image", "pull", "os@v1"); r.code != 1 || !strings.Contains(r.stderr, "shares no store") {
		t.Errorf("pull on a server of its own: %+v", r)
	}
	if r := run(t, sock, "", "image", "list", "--peers"); r.code != 1 || !strings.Contains(r.stderr, "shares no store") {
		t.Errorf("list --peers on a server of its own: %+v", r)
	}
}
