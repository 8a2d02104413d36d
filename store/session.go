package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"

	"github.com/savesync/savesync/save"
)

// JoinRequest is a game server pulling a player's save as the player joins.
type JoinRequest struct {
	UserID  int64
	JobID   string
	PlaceID int64
	// ClientSchema is the schema version the game server's code reads (0 = not stated).
	ClientSchema int
	// Steal takes the lease even if another live server holds it.
	Steal bool
}

// JoinResult is the save a server starts the session with.
type JoinResult struct {
	Player PlayerView `json:"player"`
	Lease  Lease      `json:"session"`
	// Replaced is the lease this join took over, if any.
	Replaced *Lease `json:"replaced,omitempty"`
}

// JoinSession grants the caller the player's session lease and returns the
// save migrated to the current schema. Migration happens in memory here;
// the migrated save is written with the next mutation, in its transaction,
// so the ledger records it.
//
// A lease held by another job that has not expired is refused with
// SESSION_HELD (details name the holder and expiry) unless Steal is set.
// The lease epoch is a fencing token: each grant takes the player's last
// granted epoch plus one, whether the previous lease was released, expired
// or stolen, so no two grants of one player ever share an epoch.
// Errors: INVALID_ARGUMENT, SESSION_HELD, SAVE_MIGRATION_FAILED, SCHEMA_TOO_NEW.
func (s *Store) JoinSession(ctx context.Context, req JoinRequest) (JoinResult, error) {
	if req.UserID <= 0 {
		return JoinResult{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	if req.JobID == "" || len(req.JobID) > 128 {
		return JoinResult{}, save.Errorf(save.CodeInvalidArgument, "jobId must be the game server's game.JobId (1 to 128 characters)")
	}
	if err := s.CheckClientSchema(req.ClientSchema); err != nil {
		return JoinResult{}, err
	}
	var res JoinResult
	_, err := s.runTxn(ctx, []string{s.playerName(req.UserID)}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		p := s.decodePlayer(req.UserID, docs[s.playerName(req.UserID)])
		if p.Exists && p.SchemaVersion > s.cfg.SchemaVersion {
			return nil, schemaTooNew(p.SchemaVersion, s.cfg.SchemaVersion)
		}
		st, err := s.currentState(p)
		if err != nil {
			return nil, err
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		var replaced *Lease
		epoch := p.LeaseEpoch + 1
		if held := p.Session; held != nil {
			live := held.ExpiresAt.After(now)
			if live && held.JobID != req.JobID {
				if !req.Steal {
					return nil, save.Errorf(save.CodeSessionHeld,
						"another game server holds this player's session until %s; retry after it expires, or join with steal=true (teleports)",
						held.ExpiresAt.Format(time.RFC3339)).
						WithDetail("jobId", held.JobID).WithDetail("expiresAt", held.ExpiresAt).WithDetail("epoch", held.Epoch)
				}
				replaced = held
			}
		}
		lease := Lease{
			ID:         sessionID(req.UserID, epoch, s.newID()),
			JobID:      req.JobID,
			PlaceID:    req.PlaceID,
			Epoch:      epoch,
			AcquiredAt: now,
			ExpiresAt:  now.Add(s.leaseTTL),
		}
		p.Session = &lease
		res = JoinResult{Player: s.view(p, st), Lease: lease, Replaced: replaced}
		return []*firestorepb.Write{s.upsertPlayer(p, map[string]*firestorepb.Value{
			"session":    leaseFields(&lease),
			"leaseEpoch": intValue(epoch),
			"updatedAt":  timeValue(now),
		}, now)}, nil
	})
	if err != nil {
		return JoinResult{}, err
	}
	return res, nil
}

// LeaveRequest is a game server ending a player's session: an optional
// final flush, then the release of the lease.
type LeaveRequest struct {
	SessionID string
	Actor     save.Actor
	JobID     string // the game server's job id, when the caller is one
	// IdempotencyKey scopes the leave like a mutation's key: a retry under
	// it answers the first answer; the final flush is stored under it too.
	IdempotencyKey string
	// Final is the last mutation to apply before the release (nil = none).
	Final *save.Mutation
}

// LeaveResult is a leave's answer: whether the lease was released, the
// exact response body (stored for replays) and whether it is a replay.
type LeaveResult struct {
	Released bool
	Body     []byte
	Replayed bool
}

// leaveAnswer is the stored response of a leave.
type leaveAnswer struct {
	Final    json.RawMessage `json:"final,omitempty"`
	Released bool            `json:"released"`
}

// LeaveSession applies the final flush, if any, as an ordinary idempotent
// mutation under the leave's key, then releases the lease if the caller
// still holds it. Leaving never writes the save otherwise, so a stale
// server cannot undo what others committed.
//
// The answer is recorded in players/{id}/leaves/{entryId} (the entry id
// of the caller's scope and key, as for a mutation) in the transaction
// that releases the lease, so a retry under the same key answers the same
// bytes as a replay, however often the player joined and left since.
// Released is false when the lease had been taken over, or had expired and
// been granted again, or was already released.
// Errors: INVALID_ARGUMENT, IDEMPOTENCY_KEY_REUSED (the key was used for
// another leave or final flush), and those of ApplyMutation for the flush.
func (s *Store) LeaveSession(ctx context.Context, req LeaveRequest) (LeaveResult, error) {
	userID, ok := SessionUser(req.SessionID)
	if !ok {
		return LeaveResult{}, save.Errorf(save.CodeInvalidArgument, "session id %q is not one this service issued", req.SessionID)
	}
	if err := CheckIdempotencyKey(req.IdempotencyKey); err != nil {
		return LeaveResult{}, err
	}
	hash, err := leaveHash(req)
	if err != nil {
		return LeaveResult{}, err
	}
	entryID := EntryID(req.Actor, req.IdempotencyKey)
	playerName, recordName := s.playerName(userID), s.leaveName(userID, entryID)

	var final []byte
	if req.Final != nil {
		// A retry must not run the flush again: answer it from the record
		// when there is one. (Without a flush the release's own
		// transaction reads the record, and this read is not needed.)
		docs, err := s.readDocs(ctx, []string{recordName})
		if err != nil {
			return LeaveResult{}, err
		}
		if rec, ok := docs[recordName]; ok {
			return replayLeave(rec, hash, entryID)
		}
		res, err := s.ApplyMutation(ctx, MutationRequest{
			UserID:         userID,
			Actor:          req.Actor,
			JobID:          req.JobID,
			IdempotencyKey: req.IdempotencyKey,
			Mutation:       *req.Final,
		})
		if err != nil {
			return LeaveResult{}, err
		}
		final = res.Body
	}

	var out LeaveResult
	_, err = s.runTxn(ctx, []string{playerName, recordName}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		if rec, ok := docs[recordName]; ok {
			var err error
			out, err = replayLeave(rec, hash, entryID)
			return nil, err
		}
		p := s.decodePlayer(userID, docs[playerName])
		now := s.now().UTC().Truncate(time.Microsecond)
		released := p.Session != nil && p.Session.ID == req.SessionID
		body, err := json.Marshal(leaveAnswer{Final: final, Released: released})
		if err != nil {
			return nil, err
		}
		rec, err := s.leaveRecordWrite(userID, entryID, hash, req, released, body, now)
		if err != nil {
			return nil, err
		}
		out = LeaveResult{Released: released, Body: body}
		writes := []*firestorepb.Write{rec}
		if released {
			writes = append(writes, s.sessionWrite(p, nil, now))
		}
		return writes, nil
	})
	if err != nil {
		return LeaveResult{}, err
	}
	return out, nil
}

// leaveHash identifies a leave request for its idempotency record: the
// session and the final flush, canonically encoded.
func leaveHash(req LeaveRequest) (string, error) {
	canon, err := json.Marshal(struct {
		SessionID string         `json:"sessionId"`
		Final     *save.Mutation `json:"final"`
	}{req.SessionID, req.Final})
	if err != nil {
		return "", save.Errorf(save.CodeInvalidArgument, "the final flush cannot be encoded: %v", err)
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// replayLeave answers a leave whose record exists.
func replayLeave(rec *firestorepb.Document, hash, entryID string) (LeaveResult, error) {
	f := rec.GetFields()
	if fieldString(f, "requestHash") != hash {
		return LeaveResult{}, save.Errorf(save.CodeIdempotencyKeyReused,
			"this Idempotency-Key was already used for a different leave; use a new key for a new request").
			WithDetail("entryId", entryID).WithDetail("sessionId", fieldString(f, "sessionId"))
	}
	released, _ := decodeValue(f["released"]).(bool)
	return LeaveResult{Released: released, Body: []byte(fieldString(f, "response")), Replayed: true}, nil
}

// leaveName is the full resource name of a leave's idempotency record.
func (s *Store) leaveName(userID int64, entryID string) string {
	return s.playerName(userID) + "/leaves/" + entryID
}

// leaveRecordWrite creates a leave's record: who left which session under
// which key, what it released, and the answer to replay. It expires with
// the ledger's retention, for the same Firestore TTL policy.
func (s *Store) leaveRecordWrite(userID int64, entryID, hash string, req LeaveRequest, released bool, body []byte, now time.Time) (*firestorepb.Write, error) {
	rec := map[string]any{
		"entryId":        entryID,
		"userId":         userID,
		"kind":           "leave",
		"sessionId":      req.SessionID,
		"idempotencyKey": req.IdempotencyKey,
		"requestHash":    hash,
		"actor":          map[string]any{"kind": string(req.Actor.Kind), "id": req.Actor.ID},
		"jobId":          req.JobID,
		"released":       released,
		"committedAt":    now,
		"response":       string(body),
	}
	if s.retention > 0 {
		rec["expireAt"] = now.Add(s.retention)
	}
	fields, err := encodeFields(rec)
	if err != nil {
		return nil, err
	}
	return &firestorepb.Write{
		Operation:       &firestorepb.Write_Update{Update: &firestorepb.Document{Name: s.leaveName(userID, entryID), Fields: fields}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}, nil
}

// readDocs reads documents outside any transaction, in one round trip;
// missing documents are absent from the map.
func (s *Store) readDocs(ctx context.Context, names []string) (map[string]*firestorepb.Document, error) {
	stream, err := s.gapic.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{Database: s.database, Documents: names})
	if err != nil {
		return nil, err
	}
	docs := make(map[string]*firestorepb.Document, len(names))
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if d := r.GetFound(); d != nil {
			docs[d.GetName()] = d
		}
	}
}

// RenewSession extends a held lease (the Luau module calls it while the
// player stays). Errors: INVALID_ARGUMENT, SESSION_HELD when the lease was
// taken over.
func (s *Store) RenewSession(ctx context.Context, sessionID string) (Lease, error) {
	userID, ok := SessionUser(sessionID)
	if !ok {
		return Lease{}, save.Errorf(save.CodeInvalidArgument, "session id %q is not one this service issued", sessionID)
	}
	var lease Lease
	_, err := s.runTxn(ctx, []string{s.playerName(userID)}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		p := s.decodePlayer(userID, docs[s.playerName(userID)])
		if p.Session == nil || p.Session.ID != sessionID {
			holder := map[string]any{}
			if p.Session != nil {
				holder["jobId"] = p.Session.JobID
				holder["expiresAt"] = p.Session.ExpiresAt
			}
			return nil, save.Errorf(save.CodeSessionHeld, "this session was taken over or released; rejoin the player").WithDetail("holder", holder)
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		lease = *p.Session
		lease.ExpiresAt = now.Add(s.leaseTTL)
		return []*firestorepb.Write{s.sessionWrite(p, &lease, now)}, nil
	})
	return lease, err
}

// RenewResult is one lease's answer within RenewSessions.
type RenewResult struct {
	Lease Lease
	Err   error
}

// maxConcurrentRenewals bounds the transactions one RenewSessions runs at once.
const maxConcurrentRenewals = 8

// RenewSessions renews many leases, each in its own transaction (they are
// different players), so a game server renews all its players in one
// request instead of one request per player. Each result stands alone.
func (s *Store) RenewSessions(ctx context.Context, sessionIDs []string) []RenewResult {
	out := make([]RenewResult, len(sessionIDs))
	sem := make(chan struct{}, maxConcurrentRenewals)
	var wg sync.WaitGroup
	for i, id := range sessionIDs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i].Lease, out[i].Err = s.RenewSession(ctx, id)
		}()
	}
	wg.Wait()
	return out
}

// sessionWrite sets or clears the session lease of an existing player;
// the player's last granted epoch (leaseEpoch) stays as it is.
func (s *Store) sessionWrite(p Player, lease *Lease, now time.Time) *firestorepb.Write {
	return s.upsertPlayer(p, map[string]*firestorepb.Value{
		"session":   leaseFields(lease),
		"updatedAt": timeValue(now),
	}, now)
}

// CheckClientSchema refuses a game server whose code reads an older schema
// than the saves it would be served.
func (s *Store) CheckClientSchema(client int) error {
	switch {
	case client == 0:
		return nil
	case client < s.cfg.SchemaVersion:
		return schemaTooNew(s.cfg.SchemaVersion, client)
	case client > s.cfg.SchemaVersion:
		return save.Errorf(save.CodeInvalidArgument,
			"the game code reads schema %d but this service's game config is at schema %d: deploy the new game config first", client, s.cfg.SchemaVersion)
	}
	return nil
}

func schemaTooNew(stored, reader int) error {
	return save.Errorf(save.CodeSchemaTooNew,
		"the save is at schema %d but the caller reads schema %d: update the game servers before they load this player", stored, reader).
		WithDetail("storedSchema", stored).WithDetail("callerSchema", reader)
}

// sessionID makes a session id that names its player, so leave and renew
// need only the id.
func sessionID(userID, epoch int64, random string) string {
	return fmt.Sprintf("%d.%d.%s", userID, epoch, random)
}

// SessionUser extracts the player from a session id.
func SessionUser(id string) (int64, bool) {
	user, _, ok := strings.Cut(id, ".")
	if !ok || len(id) > 200 {
		return 0, false
	}
	uid, err := strconv.ParseInt(user, 10, 64)
	return uid, err == nil && uid > 0
}
