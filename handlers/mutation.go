package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// maxBatch bounds the mutations of one batch request.
const maxBatch = 100

// postMutation applies one write-through mutation.
func (a *ServerAPI) postMutation(c *gin.Context) error {
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

// batchBody is the envelope of POST /v1/batch/mutations: many players'
// mutations in one HTTP request, to stay within Roblox's HTTP budget. The
// items stay raw here, so that each is decoded on its own and a malformed
// item fails alone (see decodeBatchItem).
type batchBody struct {
	Mutations json.RawMessage `json:"mutations"`
}

// batchItem is one decoded mutation of a batch, with its own idempotency key.
type batchItem struct {
	UserID         int64
	IdempotencyKey string
	Mutation       save.Mutation
}

// batchResult is one item's answer: its status and either the committed
// outcome or the error, exactly as the single-mutation route would answer.
// userId and idempotencyKey echo the item's, as far as they could be read.
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
// Only an envelope that cannot be read (not a JSON object, mutations not
// an array of 1 to maxBatch items) fails the whole request; an item that
// is malformed, or holds text Firestore cannot store, is answered 400 in
// its own result, with a message naming the field inside the batch
// (mutations[3].idempotencyKey), and the others still apply.
func (a *ServerAPI) postMutationBatch(c *gin.Context) error {
	if err := a.checkSchemaHeader(c); err != nil {
		return err
	}
	raws, err := readBatchItems(c)
	if err != nil {
		return err
	}
	out := make([]batchResult, len(raws))
	reqs := make([]store.MutationRequest, 0, len(raws))
	index := make([]int, 0, len(raws))
	for i, raw := range raws {
		it, err := decodeBatchItem(raw, fmt.Sprintf("mutations[%d]", i))
		out[i] = batchResult{UserID: it.UserID, IdempotencyKey: it.IdempotencyKey}
		if err != nil {
			out[i].fail(toDomainError(c.Request.Context(), err))
			continue
		}
		reqs = append(reqs, store.MutationRequest{
			UserID:         it.UserID,
			Actor:          actorOf(c),
			JobID:          c.GetHeader(headerJobID),
			IdempotencyKey: it.IdempotencyKey,
			Mutation:       it.Mutation,
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

// readBatchItems reads the batch envelope and answers its items undecoded.
// The envelope's own errors fail the request.
func readBatchItems(c *gin.Context) ([]json.RawMessage, error) {
	body, err := readRawBody(c)
	if err != nil {
		return nil, err
	}
	var env batchBody
	if err := decodeJSON(body, &env); err != nil {
		return nil, err
	}
	list := bytes.TrimSpace(env.Mutations)
	if len(list) == 0 || string(list) == "null" {
		return nil, badField("mutations", "required: an array of 1 to %d items {userId, idempotencyKey, mutation}", maxBatch)
	}
	if list[0] != '[' {
		return nil, badField("mutations", "must be an array of 1 to %d items {userId, idempotencyKey, mutation}, got a JSON %s", maxBatch, jsonKind(list))
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(list, &raws); err != nil {
		return nil, jsonError(err)
	}
	if len(raws) == 0 || len(raws) > maxBatch {
		return nil, badField("mutations", "send between 1 and %d mutations, got %d", maxBatch, len(raws))
	}
	return raws, nil
}

// decodeBatchItem decodes one batch item strictly: an object with exactly
// userId (a positive integer), idempotencyKey (a usable key) and mutation
// (as the single-mutation route takes it), every string storable. Errors
// name fields under prefix; the item answers what it could read of its
// userId and idempotencyKey either way.
func decodeBatchItem(raw json.RawMessage, prefix string) (batchItem, error) {
	var it batchItem
	field := func(name string) string { return prefix + "." + name }
	raw = bytes.TrimSpace(raw)
	if err := checkBodyText(raw, prefix); err != nil {
		return it, err
	}
	if raw[0] != '{' {
		return it, itemError(prefix, "must be an object {userId, idempotencyKey, mutation}, got a JSON %s", jsonKind(raw))
	}
	fields, err := batchItemFields(raw, prefix)
	if err != nil {
		return it, err
	}
	// userId and idempotencyKey first, so even a refused item says whose it was.
	if v, ok := fields["userId"]; !ok {
		return it, itemError(field("userId"), "required: the player's Roblox user id")
	} else if n, err := strconv.ParseInt(string(v), 10, 64); err != nil || n <= 0 {
		return it, itemError(field("userId"), "must be a positive Roblox user id (a JSON integer), got %s", excerpt(v))
	} else {
		it.UserID = n
	}
	if v, ok := fields["idempotencyKey"]; !ok {
		return it, itemError(field("idempotencyKey"), "required: generate a key (a UUID) for each mutation before its first attempt and reuse it on retries")
	} else if err := json.Unmarshal(v, &it.IdempotencyKey); err != nil {
		return it, itemError(field("idempotencyKey"), "must be a string, got a JSON %s", jsonKind(v))
	} else if it.IdempotencyKey == "" {
		return it, itemError(field("idempotencyKey"), "required: generate a key (a UUID) for each mutation before its first attempt and reuse it on retries")
	} else if err := store.CheckIdempotencyKey(it.IdempotencyKey); err != nil {
		e, _ := save.AsError(err)
		return it, itemError(field("idempotencyKey"), "not a usable key (%s)", e.Message)
	}
	v, ok := fields["mutation"]
	if !ok {
		return it, itemError(field("mutation"), `required: the mutation to apply, {"ops":[...]}`)
	}
	m, err := save.DecodeMutation(v)
	if err != nil {
		return it, within(err, field("mutation"))
	}
	it.Mutation = m
	return it, nil
}

// batchItemFields reads the members of a batch item object, refusing
// unknown and duplicate names.
func batchItemFields(raw json.RawMessage, prefix string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, jsonError(err)
	}
	fields := make(map[string]json.RawMessage, 3)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, jsonError(err)
		}
		switch name {
		case "userId", "idempotencyKey", "mutation":
		default:
			return nil, itemError(prefix+"."+name, "unknown field: an item has userId, idempotencyKey and mutation")
		}
		if _, dup := fields[name]; dup {
			return nil, itemError(prefix+"."+name, "duplicate key")
		}
		fields[name] = v
	}
	return fields, nil
}

// itemError is the INVALID_ARGUMENT for one field of a batch item, with
// the field in details as the domain's errors carry it.
func itemError(field, format string, args ...any) error {
	return save.Errorf(save.CodeInvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...)).WithDetail("field", field)
}

// within moves a domain error about a part of a document under the part's
// place in the request: ops[0].op inside mutations[2].mutation becomes
// mutations[2].mutation.ops[0].op, in the message and in details.field.
func within(err error, place string) error {
	e, ok := save.AsError(err)
	if !ok {
		return err
	}
	out := &save.Error{Code: e.Code}
	for k, v := range e.Details {
		out.WithDetail(k, v)
	}
	f, _ := e.Details["field"].(string)
	if f == "" {
		out.Message = place + ": " + e.Message
		out.WithDetail("field", place)
		return out
	}
	full := place + "." + f
	if strings.HasPrefix(f, "[") {
		full = place + f
	}
	if rest, ok := strings.CutPrefix(e.Message, f+": "); ok {
		out.Message = full + ": " + rest
	} else {
		out.Message = full + ": " + e.Message
	}
	out.WithDetail("field", full)
	return out
}

// jsonKind names the JSON type of a raw value, for error messages.
func jsonKind(raw []byte) string {
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// excerpt quotes the start of a raw JSON value for an error message.
func excerpt(raw []byte) string {
	const max = 40
	if r := []rune(string(raw)); len(r) > max {
		return string(r[:max]) + "…"
	}
	return string(raw)
}

// checkSchemaHeader refuses game code older than the served schema.
func (a *ServerAPI) checkSchemaHeader(c *gin.Context) error {
	n, err := clientSchema(c)
	if err != nil {
		return err
	}
	return a.game.CheckClientSchema(n)
}
