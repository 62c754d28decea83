package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/api/apitest"
	"github.com/sealroot/sealroot/server/api/client"
)

// unavailableService refuses revocations as the machine manager does when
// its audit log cannot be written.
type unavailableService struct{ api.Service }

func (unavailableService) Revoke(context.Context, string, string) (*api.Machine, error) {
	return nil, fmt.Errorf("%w: revoke of machine aaaaaaaa1111 not done: audit record not written: no space left on device", api.ErrUnavailable)
}

// An operation the server cannot audit is answered 503 with its reason,
// and the client gives back api.ErrUnavailable.
func TestUnavailableIs503(t *testing.T) {
	path := apitest.Serve(t, unavailableService{})
	_, err := client.New(path).Revoke(context.Background(), "alpha", "stolen")
	var apiErr *api.Error
	if !errors.Is(err, api.ErrUnavailable) || !errors.As(err, &apiErr) || apiErr.Code != api.CodeUnavailable ||
		!strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Revoke = %#v, want api.ErrUnavailable with the server's reason", err)
	}
	resp, err := unixHTTPClient(path).Post("http://sealroot/v1/machines/alpha/revoke", "application/json", strings.NewReader(`{"reason":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", resp.StatusCode)
	}
}
