package machines

import (
	"errors"
	"io/fs"

	"github.com/sealroot/sealroot/server/api"
	"github.com/sealroot/sealroot/server/image"
	"github.com/sealroot/sealroot/server/roots"
	"github.com/sealroot/sealroot/server/store"
	"github.com/sealroot/sealroot/server/volume"
)

// apiError gives a storage error the api sentinel its kind maps to, so the
// API answers with the right status and errors.Is still finds both.
type apiError struct{ kind, err error }

func (e *apiError) Error() string   { return e.err.Error() }
func (e *apiError) Unwrap() []error { return []error{e.kind, e.err} }

func isRefusal(err error) bool {
	for _, s := range []error{api.ErrInvalid, api.ErrNotFound, api.ErrAmbiguous, api.ErrConflict} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// toAPI maps image, volume, root and group errors to api sentinels.
func toAPI(err error) error {
	var kind error
	switch {
	case err == nil || isRefusal(err):
		return err
	case errors.Is(err, image.ErrNotFound), errors.Is(err, volume.ErrNotFound), errors.Is(err, fs.ErrNotExist),
		errors.Is(err, roots.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, roots.ErrNoRoot):
		kind = api.ErrNotFound
	case errors.Is(err, image.ErrBadName), errors.Is(err, volume.ErrBadName), errors.Is(err, image.ErrUnsafePath),
		errors.Is(err, roots.ErrBadName), errors.Is(err, store.ErrBadGroupName):
		kind = api.ErrInvalid
	case errors.Is(err, volume.ErrExists), errors.Is(err, volume.ErrBusy), errors.Is(err, roots.ErrExists),
		errors.Is(err, store.ErrGroupInUse), errors.Is(err, roots.ErrInUse), errors.Is(err, image.ErrUnclean):
		kind = api.ErrConflict
	default:
		return err
	}
	return &apiError{kind: kind, err: err}
}
