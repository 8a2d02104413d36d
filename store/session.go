package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/firestore/apiv1/firestorepb"

	"github.com/savesync/savesync/save"
)

// JoinRequest is a game server pulling a player's save as the player joins.
type JoinRequest struct {
	UserID  int64
	JobID   string
	PlaceID int64
	// ClientSchema is the schema version the game server's code reads. The
	// HTTP route requires it; 0 (not stated) is left to in-process callers
	// such as tests and tools, and skips the check.
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
func (s *Store) JoinSession(ctx context.Context, req JoinRequest) (_ JoinResult, err error) {
	defer wrapOp(&err, "store.JoinSession(%d)", req.UserID)
	if req.UserID <= 0 {
		return JoinResult{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	if req.JobID == "" || len(req.JobID) > 128 {
		return JoinResult{}, save.Errorf(save.CodeInvalidArgument, "jobId must be the game server's game.JobId (1 to 128 characters)")
	}
	if !utf8.ValidString(req.JobID) || strings.ContainsRune(req.JobID, 0) {
		// The job id names the server in later paths (/v1/servers/{jobId}/changes),
		// where such text is refused: a lease under it could never be polled.
		return JoinResult{}, save.Errorf(save.CodeInvalidArgument, "jobId must be UTF-8 text without NUL characters (the game server's game.JobId)").WithDetail("field", "jobId")
	}
	if req.ClientSchema > s.cfg.SchemaVersion {
		return JoinResult{}, s.cfg.CheckClientSchema(req.ClientSchema)
	}
	var res JoinResult
	_, err = s.runTxn(ctx, []string{s.docName(playerPath(req.UserID))}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		p := s.decodePlayer(req.UserID, docs[s.docName(playerPath(req.UserID))])
		if err := s.cfg.CheckJoinSchema(p.Exists, p.SchemaVersion, req.ClientSchema); err != nil {
			return nil, err
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
		key, keyFrom := p.LeaseKey, p.LeaseKeyFrom
		if key == "" {
			key, keyFrom = s.newID(), epoch
		}
		lease := Lease{
			ID:         sessionID(req.UserID, epoch, leaseSecret(key, epoch)),
			JobID:      req.JobID,
			PlaceID:    req.PlaceID,
			Epoch:      epoch,
			AcquiredAt: now,
			ExpiresAt:  now.Add(s.leaseTTL),
		}
		p.Session = &lease
		res = JoinResult{Player: s.view(p, st), Lease: lease, Replaced: replaced}
		return []*firestorepb.Write{s.upsertPlayer(p, map[string]*firestorepb.Value{
			"session":      leaseFields(&lease),
			"leaseEpoch":   intValue(epoch),
			"leaseKey":     stringValue(key),
			"leaseKeyFrom": intValue(keyFrom),
			"updatedAt":    timeValue(now),
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
// Errors: INVALID_ARGUMENT (a malformed session id or key), NOT_FOUND (a
// session never issued for the player; nothing is flushed),
// IDEMPOTENCY_KEY_REUSED (the key was used for another leave or final
// flush), and those of ApplyMutation for the flush.
func (s *Store) LeaveSession(ctx context.Context, req LeaveRequest) (_ LeaveResult, err error) {
	defer wrapOp(&err, "store.LeaveSession")
	ref, err := parseSessionID(req.SessionID)
	if err != nil {
		return LeaveResult{}, err
	}
	userID := ref.userID
	if err := CheckIdempotencyKey(req.IdempotencyKey); err != nil {
		return LeaveResult{}, err
	}
	hash, err := leaveHash(req)
	if err != nil {
		return LeaveResult{}, err
	}
	entryID := EntryID(req.Actor, req.IdempotencyKey)
	playerName, recordName := s.docName(playerPath(userID)), s.docName(leavePath(userID, entryID))

	var final []byte
	if req.Final != nil {
		// A retry must not run the flush again, and a session never
		// issued must not flush at all: answer both from one read before
		// the flush. (Without a flush the release's own transaction reads
		// the same documents, and this read is not needed.)
		docs, err := s.readDocs(ctx, []string{playerName, recordName})
		if err != nil {
			return LeaveResult{}, err
		}
		if rec, ok := docs[recordName]; ok {
			return replayLeave(rec, hash, entryID)
		}
		if s.standing(s.decodePlayer(userID, docs[playerName]), ref) == sessionNeverIssued {
			return LeaveResult{}, neverIssued(ref)
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
		standing := s.standing(p, ref)
		if standing == sessionNeverIssued {
			return nil, neverIssued(ref)
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		released := standing == sessionCurrent
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
		Operation:       &firestorepb.Write_Update{Update: &firestorepb.Document{Name: s.docName(leavePath(userID, entryID)), Fields: fields}},
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
// player stays). A lease that expired without being granted again is
// still the caller's and is renewed.
// Errors: INVALID_ARGUMENT (a malformed session id), NOT_FOUND (a session
// never issued for the player, or one that ended with no game server
// holding the player now: details.ended is true), SESSION_HELD (the lease
// was taken over; details.holder names the live holder).
func (s *Store) RenewSession(ctx context.Context, sessionID string) (_ Lease, err error) {
	defer wrapOp(&err, "store.RenewSession")
	ref, err := parseSessionID(sessionID)
	if err != nil {
		return Lease{}, err
	}
	var lease Lease
	_, err = s.runTxn(ctx, []string{s.docName(playerPath(ref.userID))}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		p := s.decodePlayer(ref.userID, docs[s.docName(playerPath(ref.userID))])
		now := s.now().UTC().Truncate(time.Microsecond)
		switch s.standing(p, ref) {
		case sessionNeverIssued:
			return nil, neverIssued(ref)
		case sessionPast:
			return nil, sessionGone(p, ref, now)
		}
		lease = *p.Session
		lease.ExpiresAt = now.Add(s.leaseTTL)
		return []*firestorepb.Write{s.sessionWrite(p, &lease, now)}, nil
	})
	return lease, err
}

// sessionStanding is what a player's document says of a session id.
type sessionStanding int

const (
	// sessionNeverIssued: no grant of this player ever had this id.
	sessionNeverIssued sessionStanding = iota
	// sessionCurrent: the id of the lease the document holds (live or not).
	sessionCurrent
	// sessionPast: a lease of this player that has since been released or
	// taken over (or, for ids from before session ids were derived from
	// the player's lease key, one that cannot be told from such a lease).
	sessionPast
)

// standing tells whether a session id was issued for the player, and
// whether it is the lease now held. Every grant's id derives from the
// player's lease key and its epoch, and every epoch is granted once, so an
// id is checked exactly from its epoch with no list of past ids: above
// the last granted epoch it was never issued; from LeaseKeyFrom on it was
// issued only if its secret matches. Ids of epochs before LeaseKeyFrom
// were random; they count as past leases unless they are the current one.
func (s *Store) standing(p Player, ref sessionRef) sessionStanding {
	switch {
	case p.Session != nil && p.Session.ID == ref.id:
		return sessionCurrent
	case !p.Exists || ref.epoch > p.LeaseEpoch:
		return sessionNeverIssued
	case p.LeaseKey != "" && ref.epoch >= p.LeaseKeyFrom:
		if subtle.ConstantTimeCompare([]byte(ref.secret), []byte(leaseSecret(p.LeaseKey, ref.epoch))) == 1 {
			return sessionPast
		}
		return sessionNeverIssued
	}
	return sessionPast
}

// neverIssued is the answer for a session id no grant of the player had.
func neverIssued(ref sessionRef) error {
	return save.Errorf(save.CodeNotFound,
		"session %s was never issued for player %d: use the session id a join (POST /v1/sessions) answered", ref.id, ref.userID).
		WithDetail("sessionId", ref.id)
}

// sessionGone answers the renewal of a lease that is no longer held: who
// holds the player now, or that nobody does.
func sessionGone(p Player, ref sessionRef, now time.Time) error {
	if held := p.Session; held != nil && held.ExpiresAt.After(now) {
		return save.Errorf(save.CodeSessionHeld,
			"this session was taken over: game server %s holds the player until %s (epoch %d); rejoin the player to take it back",
			held.JobID, held.ExpiresAt.Format(time.RFC3339), held.Epoch).
			WithDetail("holder", map[string]any{"jobId": held.JobID, "expiresAt": held.ExpiresAt, "epoch": held.Epoch}).
			WithDetail("jobId", held.JobID).WithDetail("expiresAt", held.ExpiresAt).WithDetail("epoch", held.Epoch)
	}
	return save.Errorf(save.CodeNotFound,
		"session %s has ended (released, or taken over by a lease that has ended too) and no game server holds the player now: join the player again", ref.id).
		WithDetail("sessionId", ref.id).WithDetail("ended", true)
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

// sessionID makes a session id that names its player and epoch, so leave
// and renew need only the id.
func sessionID(userID, epoch int64, secret string) string {
	return fmt.Sprintf("%d.%d.%s", userID, epoch, secret)
}

// leaseSecret is the random-looking part of the session id of a player's
// grant at epoch: derived from the player's lease key, which never leaves
// the database, so ids cannot be guessed, and any id can be checked
// without a record of it.
func leaseSecret(key string, epoch int64) string {
	sum := sha256.Sum256([]byte(key + "\x00" + strconv.FormatInt(epoch, 10)))
	return hex.EncodeToString(sum[:secretBytes])
}

// secretBytes is the length of a session id's secret (32 hex digits).
const secretBytes = 16

// maxSessionIDLength bounds session ids: a user id, an epoch and the secret.
const maxSessionIDLength = 20 + 1 + 20 + 1 + 2*secretBytes

// sessionRef is a session id taken apart.
type sessionRef struct {
	id     string
	userID int64
	epoch  int64
	secret string
}

// parseSessionID takes apart a session id: <userId>.<epoch>.<32 hex digits>.
// Errors: INVALID_ARGUMENT.
func parseSessionID(id string) (sessionRef, error) {
	bad := func() error {
		shown := id
		if len(shown) > maxSessionIDLength || !utf8.ValidString(shown) {
			shown = "(not shown)"
		}
		return save.Errorf(save.CodeInvalidArgument,
			"sessionId: %q is not a session id this service issues (<userId>.<epoch>.<%d hex digits>, as a join answered)", shown, 2*secretBytes).
			WithDetail("field", "sessionId")
	}
	if len(id) > maxSessionIDLength {
		return sessionRef{}, bad()
	}
	parts := strings.Split(id, ".")
	if len(parts) != 3 {
		return sessionRef{}, bad()
	}
	user, err1 := strconv.ParseInt(parts[0], 10, 64)
	epoch, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || user <= 0 || epoch <= 0 || !isLowerHex(parts[2], 2*secretBytes) {
		return sessionRef{}, bad()
	}
	// Only the spelling this service issues: "+7" or "007" would name the
	// same lease under another id.
	if parts[0] != strconv.FormatInt(user, 10) || parts[1] != strconv.FormatInt(epoch, 10) {
		return sessionRef{}, bad()
	}
	return sessionRef{id: id, userID: user, epoch: epoch, secret: parts[2]}, nil
}

// isLowerHex reports whether s is exactly n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
