package handlers

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// maxBatch bounds the mutations of one batch request.
const maxBatch = 100

// postMutation applies one write-through mutation.
func (a *API) postMutation(c *gin.Context) error {
	userID, err := pathUserID(c)
	if err != nil {
		return err
	}
	if err := a.checkSchemaHeader(c); err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	m, err := save.DecodeMutation(body)
	if err != nil {
		return err
	}
	res, err := a.store.ApplyMutation(c.Request.Context(), store.MutationRequest{
		UserID:         userID,
		Actor:          actorOf(c),
		JobID:          c.GetHeader(headerJobID),
		IdempotencyKey: c.GetHeader(headerIdempotencyKey),
		Mutation:       m,
	})
	if err != nil {
		return err
	}
	writeMutation(c, res)
	return nil
}

// batchBody is the body of POST /v1/batch/mutations: many players'
// mutations in one HTTP request, to stay within Roblox's HTTP budget.
type batchBody struct {
	Mutations []batchItem `json:"mutations"`
}

// batchItem is one mutation of a batch, with its own idempotency key.
type batchItem struct {
	UserID         int64           `json:"userId"`
	IdempotencyKey string          `json:"idempotencyKey"`
	Mutation       json.RawMessage `json:"mutation"`
}

// batchResult is one item's answer: its status and either the committed
// outcome or the error, exactly as the single-mutation route would answer.
type batchResult struct {
	UserID         int64           `json:"userId"`
	IdempotencyKey string          `json:"idempotencyKey"`
	Status         int             `json:"status"`
	Replayed       bool            `json:"replayed,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          *ErrorDetail    `json:"error,omitempty"`
}

// fail records an item's error and the status it maps to.
func (r *batchResult) fail(e *save.Error) {
	r.Status = HTTPStatus(e.Code)
	d := errorBody(e).Error
	r.Error = &d
}

// postMutationBatch applies many mutations; each succeeds or fails alone.
func (a *API) postMutationBatch(c *gin.Context) error {
	if err := a.checkSchemaHeader(c); err != nil {
		return err
	}
	var req batchBody
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if len(req.Mutations) == 0 || len(req.Mutations) > maxBatch {
		return badField("mutations", "send between 1 and %d mutations, got %d", maxBatch, len(req.Mutations))
	}
	// An item whose mutation does not decode is answered on its own, like
	// any other refused item; the rest of the batch still applies.
	out := make([]batchResult, len(req.Mutations))
	reqs := make([]store.MutationRequest, 0, len(req.Mutations))
	index := make([]int, 0, len(req.Mutations))
	for i, it := range req.Mutations {
		out[i] = batchResult{UserID: it.UserID, IdempotencyKey: it.IdempotencyKey}
		m, err := save.DecodeMutation(it.Mutation)
		if err != nil {
			e := toDomainError(c.Request.Context(), err)
			out[i].fail(save.Errorf(e.Code, "mutations[%d].mutation: %s", i, e.Message))
			continue
		}
		reqs = append(reqs, store.MutationRequest{
			UserID:         it.UserID,
			Actor:          actorOf(c),
			JobID:          c.GetHeader(headerJobID),
			IdempotencyKey: it.IdempotencyKey,
			Mutation:       m,
		})
		index = append(index, i)
	}
	for j, r := range a.store.ApplyMutations(c.Request.Context(), reqs) {
		i := index[j]
		if r.Err != nil {
			out[i].fail(toDomainError(c.Request.Context(), r.Err))
			continue
		}
		// The stored bytes, as the single-mutation route answers them:
		// decoding and re-encoding would turn large integers into floats.
		out[i].Status = http.StatusOK
		out[i].Replayed = r.Result.Replayed
		out[i].Result = json.RawMessage(r.Result.Body)
	}
	c.JSON(http.StatusOK, gin.H{"results": out})
	return nil
}

// checkSchemaHeader refuses game code older than the served schema.
func (a *API) checkSchemaHeader(c *gin.Context) error {
	n, err := clientSchema(c)
	if err != nil {
		return err
	}
	return a.store.CheckClientSchema(n)
}
