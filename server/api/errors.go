package api

import (
	"errors"
	"net/http"
)

// ErrForbidden is returned when the peer on the socket is not allowed to
// use the admin API.
var ErrForbidden = errors.New("forbidden")

// Error codes carried in Error.Code.
const (
	CodeNotFound    = "not_found"
	CodeAmbiguous   = "ambiguous"
	CodeConflict    = "conflict"
	CodeInvalid     = "invalid"
	CodeForbidden   = "forbidden"
	CodeUnavailable = "unavailable"
	CodeInternal    = "internal"
)

// codes maps each code to its sentinel error and HTTP status.
var codes = []struct {
	code   string
	err    error
	status int
}{
	{CodeNotFound, ErrNotFound, http.StatusNotFound},
	{CodeAmbiguous, ErrAmbiguous, http.StatusConflict},
	{CodeConflict, ErrConflict, http.StatusConflict},
	{CodeInvalid, ErrInvalid, http.StatusBadRequest},
	{CodeForbidden, ErrForbidden, http.StatusForbidden},
	{CodeUnavailable, ErrUnavailable, http.StatusServiceUnavailable},
}

// Error is the JSON body of every failed request. It unwraps to the
// sentinel error its Code names (ErrNotFound, ErrAmbiguous, ...), so the
// client can return it as is and errors.Is still works.
type Error struct {
	Message string `json:"error"`
	Code    string `json:"code"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel error for e.Code, or nil for internal errors.
func (e *Error) Unwrap() error {
	for _, c := range codes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// errorStatus returns the code and HTTP status for err.
func errorStatus(err error) (code string, status int) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return CodeInternal, http.StatusInternalServerError
}
