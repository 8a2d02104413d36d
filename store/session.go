package store

import (
	"context"
	"fmt"
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

// LeaveSession releases a session lease if the caller still holds it. The
// final flush is an ordinary mutation the caller sends first (or in the
// same request through the handler); leaving never writes the save, so a
// stale server cannot undo what others committed.
// It reports whether the lease was released (false when it had been taken
// over or had already expired and been re-granted).
// Errors: INVALID_ARGUMENT.
func (s *Store) LeaveSession(ctx context.Context, sessionID string) (bool, error) {
	userID, ok := SessionUser(sessionID)
	if !ok {
		return false, save.Errorf(save.CodeInvalidArgument, "session id %q is not one this service issued", sessionID)
	}
	released := false
	_, err := s.runTxn(ctx, []string{s.playerName(userID)}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		released = false
		p := s.decodePlayer(userID, docs[s.playerName(userID)])
		if p.Session == nil || p.Session.ID != sessionID {
			return nil, nil
		}
		released = true
		return []*firestorepb.Write{s.sessionWrite(p, nil, s.now().UTC())}, nil
	})
	return released, err
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
