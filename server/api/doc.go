// Package api serves sealroot's admin API: HTTP/JSON over a Unix socket,
// used by the sealroot CLI through package client.
//
// # Routes
//
//	GET    /v1/machines                         list machines
//	GET    /v1/machines/{ref}                   one machine
//	POST   /v1/machines/{ref}/approve           body ApproveOptions
//	POST   /v1/machines/{ref}/revoke            body {"reason": "..."}
//	DELETE /v1/machines/{ref}                   forget a machine
//	POST   /v1/machines/{ref}/forget            forget, deleting its roots unless keep_root (ForgetRequest, Forgotten)
//	GET    /v1/machines/{ref}/secrets           {"names": [...]}, never values
//	PUT    /v1/machines/{ref}/secrets/{name}    raw body, at most MaxSecretSize
//	DELETE /v1/machines/{ref}/secrets/{name}    delete a secret
//
// Answers are the view types of view.go (Machine, Group, Image, ...), not
// the server's stored records: the server converts its records into them
// (server/machines), so the store's schema can change while the JSON
// shapes, pinned in testdata/*.json, stay. The API and its client import
// no record package (server/store, server/image).
//
// Errors are JSON Error values; their code maps back to the Service
// sentinel errors, so errors.Is works on both sides of the socket:
// not_found 404, ambiguous 409, conflict 409, invalid 400 (413 for a secret
// over MaxSecretSize), forbidden 403, internal 500.
//
// # Access
//
// Listen creates the socket mode 0600 in a 0700 directory. On top of that,
// Server records each connection's SO_PEERCRED and the handler refuses
// (403) any peer whose uid is neither 0 nor the server's own. A handler
// served by anything other than Server sees no peer and refuses everything.
package api
