// Package handlers is savesync's HTTP surface: the Roblox game-server API,
// the companion API and the support API on Gin, their authentication, and
// the one place where errors become responses.
package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// ServerAPI serves the routes of Roblox game servers over a store:
// sessions, reads and mutations, each authenticated by a server key.
type ServerAPI struct {
	store *store.Store
	game  *save.Config
	keys  *ServerKeys
}

// NewServerAPI returns the game-server API over a store that applies
// mutations with game, authenticating game servers with keys.
func NewServerAPI(st *store.Store, game *save.Config, keys *ServerKeys) *ServerAPI {
	return &ServerAPI{store: st, game: game, keys: keys}
}

// Register adds the game-server routes to a router.
func (a *ServerAPI) Register(r gin.IRouter) {
	srv := r.Group("/v1", a.keys.RequireServerKey())
	srv.POST("/sessions", handle(a.joinSession))
	srv.POST("/sessions/:sessionId/renew", handle(a.renewSession))
	srv.POST("/sessions/:sessionId/leave", handle(a.leaveSession))
	srv.GET("/players/:userId", handle(a.getPlayer))
	srv.POST("/players/:userId/mutations", handle(a.postMutation))
	srv.POST("/batch/mutations", handle(a.postMutationBatch))
	srv.POST("/batch/sessions/renew", handle(a.renewSessions))
}

// Headers of the mutation protocol.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
	headerJobID          = "Roblox-Job-Id"
	headerSchemaVersion  = "Savesync-Schema-Version"
)

// readBody reads a request body within the size limit set by LimitBody and
// refuses strings Firestore cannot store (see checkBodyText), naming the
// field, before anything decodes them.
func readBody(c *gin.Context) ([]byte, error) {
	b, err := readRawBody(c)
	if err != nil {
		return nil, err
	}
	if err := checkBodyText(b, ""); err != nil {
		return nil, err
	}
	return b, nil
}

// readRawBody reads a request body within the size limit set by LimitBody,
// leaving its text unchecked: for a caller that checks parts of the body
// on their own (a batch refuses one item, not the whole request).
func readRawBody(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		if IsBodyTooLarge(err) || IsBodyReadTimeout(err) {
			return nil, err
		}
		return nil, save.Errorf(save.CodeInvalidArgument, "the request body could not be read: send it complete")
	}
	return b, nil
}

// bindJSON reads the request body within the size limit and decodes it
// strictly (see decodeJSON).
func bindJSON(c *gin.Context, v any) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON strictly decodes a JSON body into v: unknown fields, wrong
// types and trailing data are refused with a message naming the problem.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return save.Errorf(save.CodeInvalidArgument, "the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return save.Errorf(save.CodeInvalidArgument, "the request body has data after the JSON object")
	}
	return nil
}

// jsonError explains a JSON decoding error.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return save.Errorf(save.CodeInvalidArgument, "the request body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return save.Errorf(save.CodeInvalidArgument, "the request body must be a JSON object, got a JSON %s", typ.Value)
	case errors.As(err, &typ):
		return save.Errorf(save.CodeInvalidArgument, "field %q: expected %s, got a JSON %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return save.Errorf(save.CodeInvalidArgument, "the request body is truncated JSON")
	default:
		return save.Errorf(save.CodeInvalidArgument, "the request body is not acceptable: %s", err.Error())
	}
}

// pathUserID parses the :userId path parameter.
func pathUserID(c *gin.Context) (int64, error) {
	raw := c.Param("userId")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, save.Errorf(save.CodeInvalidArgument, "the user id in the path must be a positive Roblox user id, got %q", raw)
	}
	return id, nil
}

// clientSchema reads the optional Savesync-Schema-Version header.
func clientSchema(c *gin.Context) (int, error) {
	h := c.GetHeader(headerSchemaVersion)
	if h == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(h)
	if err != nil || n < 1 {
		return 0, save.Errorf(save.CodeInvalidArgument, "%s must be a positive integer, got %q", headerSchemaVersion, h)
	}
	return n, nil
}

// writeMutation answers a committed (or replayed) mutation with its stored body.
func writeMutation(c *gin.Context, res store.MutationResult) {
	if res.Replayed {
		c.Header(headerReplayed, "true")
	}
	c.Data(200, "application/json; charset=utf-8", res.Body)
}

// badField is a short INVALID_ARGUMENT for one field.
func badField(field, format string, args ...any) error {
	return save.Errorf(save.CodeInvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}
