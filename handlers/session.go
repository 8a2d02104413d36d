package handlers

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// joinBody is the body of POST /v1/sessions.
type joinBody struct {
	UserID        int64  `json:"userId"`
	JobID         string `json:"jobId"`
	PlaceID       int64  `json:"placeId"`
	SchemaVersion int    `json:"schemaVersion"`
	Steal         bool   `json:"steal"`
}

// joinSession pulls a player's save and takes the session lease.
func (a *ServerAPI) joinSession(c *gin.Context) error {
	var req joinBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.UserID <= 0 {
		return badField("userId", "must be a positive Roblox user id")
	}
	// The schema check guards every session, so a join must state what
	// the game code reads; a missing field would skip it.
	if req.SchemaVersion <= 0 {
		return save.Errorf(save.CodeInvalidArgument,
			"schemaVersion: required, the save schema this game code reads (a positive integer; this service's current schema is %d)",
			a.game.SchemaVersion).WithDetail("field", "schemaVersion")
	}
	res, err := a.store.JoinSession(c.Request.Context(), store.JoinRequest{
		UserID:       req.UserID,
		JobID:        req.JobID,
		PlaceID:      req.PlaceID,
		ClientSchema: req.SchemaVersion,
		Steal:        req.Steal,
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, res)
	return nil
}

// renewSession extends a held lease.
func (a *ServerAPI) renewSession(c *gin.Context) error {
	lease, err := a.store.RenewSession(c.Request.Context(), c.Param("sessionId"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"session": lease})
	return nil
}

// leaveBody is the optional body of POST /v1/sessions/{id}/leave: a final
// flush applied before the lease is released.
type leaveBody struct {
	Final json.RawMessage `json:"final"`
}

// leaveSession applies the final flush, if any, then releases the lease.
// Leave is a mutation route: it needs an Idempotency-Key, and a retry
// under the same key answers the stored answer byte for byte, marked
// Idempotent-Replayed, whether or not it carried a final flush.
func (a *ServerAPI) leaveSession(c *gin.Context) error {
	sessionID := c.Param("sessionId")
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req leaveBody
	if len(body) > 0 {
		if err := decodeJSON(body, &req); err != nil {
			return err
		}
	}
	var final *save.Mutation
	if len(req.Final) > 0 && string(req.Final) != "null" {
		// The final flush decodes exactly as the write-through route does,
		// so a retry of either hashes to the same request.
		m, err := save.DecodeMutation(req.Final)
		if err != nil {
			e := toDomainError(c.Request.Context(), err)
			return save.Errorf(e.Code, "final: %s", e.Message)
		}
		final = &m
	}
	res, err := a.store.LeaveSession(c.Request.Context(), store.LeaveRequest{
		SessionID:      sessionID,
		Actor:          actorOf(c),
		JobID:          c.GetHeader(headerJobID),
		IdempotencyKey: c.GetHeader(headerIdempotencyKey),
		Final:          final,
	})
	if err != nil {
		return err
	}
	if res.Replayed {
		c.Header(headerReplayed, "true")
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", res.Body)
	return nil
}

// renewBatchBody is the body of POST /v1/batch/sessions/renew.
type renewBatchBody struct {
	SessionIDs []string `json:"sessionIds"`
}

// renewResult is one lease's answer in a batch renewal.
type renewResult struct {
	SessionID string       `json:"sessionId"`
	Status    int          `json:"status"`
	Session   *store.Lease `json:"session,omitempty"`
	Error     *ErrorDetail `json:"error,omitempty"`
}

// renewSessions extends many held leases in one request: a server with a
// hundred players would otherwise spend a fifth of Roblox's HTTP budget on
// renewals alone.
func (a *ServerAPI) renewSessions(c *gin.Context) error {
	var req renewBatchBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if len(req.SessionIDs) == 0 || len(req.SessionIDs) > maxBatch {
		return badField("sessionIds", "send between 1 and %d session ids, got %d", maxBatch, len(req.SessionIDs))
	}
	results := a.store.RenewSessions(c.Request.Context(), req.SessionIDs)
	out := make([]renewResult, len(results))
	for i, r := range results {
		out[i] = renewResult{SessionID: req.SessionIDs[i], Status: http.StatusOK}
		if r.Err != nil {
			e := toDomainError(c.Request.Context(), r.Err)
			d := errorBody(e).Error
			out[i].Status, out[i].Error = HTTPStatus(e.Code), &d
			continue
		}
		lease := r.Lease
		out[i].Session = &lease
	}
	c.JSON(http.StatusOK, gin.H{"results": out})
	return nil
}
