package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/wire"
)

func TestFilesRoutes(t *testing.T) {
	svc := apitest.NewService(t, testMachines()...)
	path := apitest.Serve(t, svc, api.WithFiles(svc))
	c := client.New(path)
	ctx := context.Background()
	if err := svc.Store.PutGroup(ctx, &store.Group{Name: "lab", Root: wire.RootPlan{Kind: wire.RootNone}}); err != nil {
		t.Fatal(err)
	}
	max := bytes.Repeat([]byte{'f'}, wire.MaxFileSize)
	for _, o := range []api.FileOwner{{Group: "lab"}, {Machine: "alpha"}} {
		if err := c.SetFile(ctx, o, api.File{Path: "/etc/big", Mode: 0o644, Content: max}); err != nil {
			t.Fatalf("SetFile(%s, %d bytes) = %v", o, len(max), err)
		}
		fs, err := c.Files(ctx, o)
		if err != nil || len(fs) != 1 || fs[0].Size != wire.MaxFileSize || fs[0].Content != nil {
			t.Fatalf("Files(%s) = %+v, %v", o, fs, err)
		}
		if err := c.DeleteFile(ctx, o, "/etc/big"); err != nil {
			t.Fatalf("DeleteFile(%s) = %v", o, err)
		}
		if err := c.DeleteFile(ctx, o, "/etc/big"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("DeleteFile(%s, gone) = %v, want ErrNotFound", o, err)
		}
	}
	err := c.SetFile(ctx, api.FileOwner{Machine: "alpha"}, api.File{Path: "/etc/../x"})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("SetFile(/etc/../x) = %v, want ErrInvalid", err)
	}
	// A body far over the limit: 413, nothing stored.
	body, _ := json.Marshal(api.File{Path: "/etc/huge", Content: bytes.Repeat(max, 2)})
	req, _ := http.NewRequest("PUT", "http://sealroot/v1/machines/alpha/files", bytes.NewReader(body))
	resp, err := unixHTTPClient(path).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", resp.StatusCode)
	}
	// Unknown fields are refused.
	req, _ = http.NewRequest("PUT", "http://sealroot/v1/groups/lab/files", bytes.NewReader([]byte(`{"path":"/x","owner":"root"}`)))
	resp, err = unixHTTPClient(path).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: status = %d, want 400", resp.StatusCode)
	}
	if fs, _ := c.Files(ctx, api.FileOwner{Machine: "alpha"}); len(fs) != 0 {
		t.Errorf("refused requests stored %d files", len(fs))
	}
}
