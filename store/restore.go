package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// MaxRewind bounds how many ledger entries one time-travel read undoes.
// A save is reconstructed by undoing entries from the current version
// back, so a version further back than this is refused rather than read
// for minutes.
const MaxRewind = 20000

// SaveAtVersion is a save as it was after a version committed.
type SaveAtVersion struct {
	UserID  int64 `json:"userId"`
	Version int64 `json:"version"`
	// CurrentVersion is the player's version when the save was reconstructed.
	CurrentVersion int64 `json:"currentVersion"`
	// CommittedAt is when the version committed (absent for version 0).
	CommittedAt *time.Time     `json:"committedAt,omitempty"`
	Save        map[string]any `json:"save"`
}

// VersionDiff is the field-level difference between two versions of a save.
type VersionDiff struct {
	UserID  int64         `json:"userId"`
	From    int64         `json:"from"`
	To      int64         `json:"to"`
	Changes []save.Change `json:"changes"`
}

// SaveAt reconstructs a player's save as it was at version, by undoing the
// recorded changes of every later ledger entry on the current save, all
// read from one snapshot. Version 0 is the starting save.
// Errors: INVALID_ARGUMENT (negative version), NOT_FOUND (no such version
// yet, or an entry it needs has expired under the retention policy),
// LIMIT_EXCEEDED (more than MaxRewind entries back), SAVE_MIGRATION_FAILED.
func (s *Store) SaveAt(ctx context.Context, userID, version int64) (_ SaveAtVersion, err error) {
	defer wrapOp(&err, "store.SaveAt(%d, %d)", userID, version)
	h, err := s.statesAt(ctx, userID, version)
	if err != nil {
		return SaveAtVersion{}, err
	}
	out := SaveAtVersion{UserID: userID, Version: version, CurrentVersion: h.current, Save: h.states[version].View()}
	if t, ok := h.times[version]; ok {
		out.CommittedAt = &t
	}
	return out, nil
}

// DiffVersions compares a player's save at two versions, field by field:
// each change's old value is at from and its new value at to (from may be
// after to, which shows what going back would change).
// Errors: those of SaveAt.
func (s *Store) DiffVersions(ctx context.Context, userID, from, to int64) (_ VersionDiff, err error) {
	defer wrapOp(&err, "store.DiffVersions(%d, %d, %d)", userID, from, to)
	h, err := s.statesAt(ctx, userID, from, to)
	if err != nil {
		return VersionDiff{}, err
	}
	return VersionDiff{UserID: userID, From: from, To: to, Changes: save.Diff(h.states[from], h.states[to])}, nil
}

// history is a player's save at some versions, reconstructed from one
// snapshot: the states and commit times of the versions asked for, and the
// version the player was at.
type history struct {
	states  map[int64]save.State
	times   map[int64]time.Time
	current int64
}

// statesAt reconstructs the save at each of versions from one read-only
// snapshot of the player and their later ledger entries.
func (s *Store) statesAt(ctx context.Context, userID int64, versions ...int64) (history, error) {
	if userID <= 0 {
		return history{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	oldest := slices.Min(versions)
	if oldest < 0 {
		return history{}, save.Errorf(save.CodeInvalidArgument, "versions start at 0, got %d", oldest).WithDetail("field", "version")
	}
	p, entries, err := s.readHistory(ctx, userID, oldest)
	if err != nil {
		return history{}, err
	}
	if newest := slices.Max(versions); newest > p.Version {
		return history{}, save.Errorf(save.CodeNotFound, "player %d is at version %d; version %d does not exist yet", userID, p.Version, newest).
			WithDetail("currentVersion", p.Version).WithDetail("field", "version")
	}
	if len(entries) > MaxRewind+1 {
		return history{}, save.Errorf(save.CodeLimitExceeded, "version %d is more than %d entries back; ask for a later version", oldest, MaxRewind).
			WithDetail("limit", MaxRewind)
	}
	if _, err := s.currentState(p); err != nil {
		return history{}, err
	}
	return s.rewind(p, entries, versions, oldest)
}

// readHistory reads, in one read-only transaction, a player and their
// ledger entries from version oldest on (one more than MaxRewind at most,
// to tell a rewind that is too long), newest first.
func (s *Store) readHistory(ctx context.Context, userID, oldest int64) (Player, []ledgerDoc, error) {
	var p Player
	var entries []ledgerDoc
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		entries = entries[:0]
		snap, err := tx.Get(s.fs.Doc(playerPath(userID)))
		switch {
		case status.Code(err) == codes.NotFound:
			p = s.decodePlayer(userID, nil)
		case err != nil:
			return err
		default:
			if p, err = s.playerFromSnapshot(userID, snap); err != nil {
				return err
			}
		}
		q := s.fs.Collection(ledgerCollectionPath(userID)).Where(ledgerVersion, ">=", max(oldest, 1)).
			OrderBy(ledgerVersion, firestore.Desc).Limit(MaxRewind + 2)
		it := tx.Documents(q)
		defer it.Stop()
		for {
			d, err := it.Next()
			if err == iterator.Done {
				return nil
			}
			if err != nil {
				return err
			}
			entries = append(entries, ledgerDocOf(d))
		}
	}, firestore.ReadOnly)
	return p, entries, err
}

// rewind walks back from the save as stored, in the schema it was written
// with, undoing the entries newest first: entries record their changes in
// that schema, and the entry that migrated a save records the migration's
// changes too. Each version asked for is migrated in memory to the current
// schema when it is reached.
func (s *Store) rewind(p Player, entries []ledgerDoc, versions []int64, oldest int64) (history, error) {
	raw, schemaAt := s.cfg.NewState().Encode(), s.cfg.SchemaVersion
	if p.Exists && p.Raw != nil {
		raw, schemaAt = save.CloneTree(p.Raw), p.SchemaVersion
	}
	want := make(map[int64]bool, len(versions))
	for _, v := range versions {
		want[v] = true
	}
	h := history{states: make(map[int64]save.State, len(versions)), times: make(map[int64]time.Time, len(versions)), current: p.Version}
	capture := func(v int64) error {
		if !want[v] {
			return nil
		}
		decoded, err := s.cfg.LoadState(save.CloneTree(raw), schemaAt)
		if err != nil {
			return fmt.Errorf("store.SaveAt(%d, %d): the reconstructed save does not decode: %w", p.UserID, v, err)
		}
		h.states[v] = decoded
		return nil
	}
	next := p.Version
	if err := capture(next); err != nil {
		return history{}, err
	}
	for _, e := range entries {
		if e.Version == oldest {
			// The entry that made the oldest version: only its time is needed.
			h.times[e.Version] = e.CommittedAt
			break
		}
		if e.Version != next || e.VersionBefore != next-1 {
			return history{}, expiredVersion(p.UserID, next, oldest)
		}
		if want[e.Version] {
			h.times[e.Version] = e.CommittedAt
		}
		if err := save.UndoChanges(raw, e.Changes); err != nil {
			return history{}, fmt.Errorf("store.SaveAt(%d): entry %s: %w", p.UserID, e.EntryID, err)
		}
		if e.SchemaBefore > 0 {
			schemaAt = int(e.SchemaBefore)
		}
		next--
		if err := capture(next); err != nil {
			return history{}, err
		}
	}
	if next != oldest {
		return history{}, expiredVersion(p.UserID, next, oldest)
	}
	return h, nil
}

// expiredVersion refuses a rewind that needs an entry the ledger no
// longer holds.
func expiredVersion(userID, missing, oldest int64) error {
	return save.Errorf(save.CodeNotFound, "the ledger of player %d no longer holds version %d (entries expire under the retention policy), so version %d cannot be reconstructed", userID, missing, oldest).
		WithDetail("missingVersion", missing).WithDetail("field", "version")
}

// RestoreRequest asks to set a player's save back to an earlier version.
type RestoreRequest struct {
	UserID         int64
	Version        int64
	Actor          save.Actor
	IdempotencyKey string
	// Reason says why, with the ticket; the ledger entry records it.
	Reason string
}

// RestoreVersion sets a player's save back to the save at an earlier
// version with one save.replace mutation, so the ledger stays append-only
// and the version keeps counting entries. The outcome's changes are what
// the restore undid (old: the value replaced, new: the value restored).
// A retry with the same Idempotency-Key replays the first answer.
// Errors: those of SaveAt and ApplyMutation; VERSION_CONFLICT when the
// save changed between reading and restoring (retry).
func (s *Store) RestoreVersion(ctx context.Context, req RestoreRequest) (_ MutationResult, err error) {
	defer wrapOp(&err, "store.RestoreVersion(%d, %d)", req.UserID, req.Version)
	reason := fmt.Sprintf("restore to version %d: %s", req.Version, req.Reason)
	return s.applyDerived(ctx, req.UserID, req.Actor, req.IdempotencyKey, reason, "", func() (MutationRequest, error) {
		at, err := s.SaveAt(ctx, req.UserID, req.Version)
		if err != nil {
			return MutationRequest{}, err
		}
		tree, err := jsonTree(at.Save)
		if err != nil {
			return MutationRequest{}, err
		}
		// The purchases the restore undoes are settled: refunding one
		// later would pay its price back a second time.
		undone, err := s.purchasesAfter(ctx, req.UserID, req.Version, at.CurrentVersion)
		if err != nil {
			return MutationRequest{}, err
		}
		current := at.CurrentVersion
		return MutationRequest{
			Kind: LedgerKindRestore,
			Mutation: save.Mutation{
				ExpectedVersion: &current,
				Ops:             []save.Op{{Kind: save.OpSaveReplace, Save: tree.(map[string]any)}},
				Reason:          reason,
			},
			Settles: undone,
		}, nil
	})
}

// purchasesAfter names the refunds of the purchases committed after
// version from, up to version to.
func (s *Store) purchasesAfter(ctx context.Context, userID, from, to int64) ([]string, error) {
	docs, err := s.fs.Collection(ledgerCollectionPath(userID)).Where(ledgerVersion, ">", from).Where(ledgerVersion, "<=", to).
		Select(ledgerOps).Documents(ctx).GetAll()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range docs {
		if ledgerDocOf(d).hasOp(save.OpPurchase) {
			out = append(out, refundOnce(d.Ref.ID))
		}
	}
	return out, nil
}

// refundOnce is the once-only name of refunding a purchase entry.
func refundOnce(entryID string) string { return "refund of entry " + entryID }

// RefundRequest asks to reverse a committed purchase.
type RefundRequest struct {
	UserID         int64
	EntryID        string
	Actor          save.Actor
	IdempotencyKey string
	// Reason says why, with the ticket; the ledger entry records it.
	Reason string
}

// RefundResult is a committed (or replayed) refund and what it could not
// take back.
type RefundResult struct {
	MutationResult
	Unrecovered []save.Shortfall
}

// RefundPurchase reverses the purchase recorded in a ledger entry with one
// compensating mutation (see save.Config.PlanRefund): the price comes back
// in full, the grants go back as far as the player still holds them.
// A retry with the same Idempotency-Key replays the first answer.
// Errors: NOT_FOUND (no such entry), INVALID_ARGUMENT (the entry holds no
// purchase), and those of ApplyMutation.
func (s *Store) RefundPurchase(ctx context.Context, req RefundRequest) (_ RefundResult, err error) {
	defer wrapOp(&err, "store.RefundPurchase(%d, %s)", req.UserID, req.EntryID)
	entry, ok, err := s.readLedgerDoc(ctx, req.UserID, req.EntryID)
	if err != nil {
		return RefundResult{}, err
	}
	if !ok {
		return RefundResult{}, save.Errorf(save.CodeNotFound, "player %d has no ledger entry %q", req.UserID, req.EntryID).WithDetail("field", "refundEntryId")
	}
	if !entry.hasOp(save.OpPurchase) {
		return RefundResult{}, save.Errorf(save.CodeInvalidArgument, "entry %s holds no purchase; compensate with explicit ops instead", req.EntryID).WithDetail("field", "refundEntryId")
	}
	purchase := entry.Changes
	reason := fmt.Sprintf("refund of entry %s (version %d): %s", req.EntryID, entry.Version, req.Reason)
	// One purchase is refunded once, whichever operator asks and under
	// whatever key: the refund records itself as done in its transaction.
	once := refundOnce(req.EntryID)
	res, err := s.applyDerived(ctx, req.UserID, req.Actor, req.IdempotencyKey, reason, once, func() (MutationRequest, error) {
		p, err := s.readPlayer(ctx, req.UserID)
		if err != nil {
			return MutationRequest{}, err
		}
		now, err := s.currentState(p)
		if err != nil {
			return MutationRequest{}, err
		}
		plan, err := s.cfg.PlanRefund(purchase, now)
		if err != nil {
			return MutationRequest{}, err
		}
		return MutationRequest{Kind: LedgerKindRefund, Mutation: save.Mutation{Ops: plan.Ops, Reason: reason}}, nil
	})
	if err != nil {
		return RefundResult{}, err
	}
	return RefundResult{MutationResult: res, Unrecovered: save.RefundShortfall(purchase, res.Outcome.Changes)}, nil
}

// applyDerived applies a mutation that is computed from the save as it is
// now (a restore, a refund). Its ops may differ between attempts, so the
// request hash cannot tell a retry from a new request; the reason, which
// names everything the caller asked for, does: an entry under the same
// key and reason is replayed, under another reason it is
// IDEMPOTENCY_KEY_REUSED.
func (s *Store) applyDerived(ctx context.Context, userID int64, actor save.Actor, key, reason, once string, build func() (MutationRequest, error)) (MutationResult, error) {
	if err := CheckIdempotencyKey(key); err != nil {
		return MutationResult{}, err
	}
	if res, done, err := s.replayDerived(ctx, userID, actor, key, reason); done || err != nil {
		return res, err
	}
	req, err := build()
	if err != nil {
		return MutationResult{}, err
	}
	req.UserID, req.Actor, req.IdempotencyKey, req.Once = userID, actor, key, once
	res, err := s.ApplyMutation(ctx, req)
	if save.ErrorCode(err) == save.CodeIdempotencyKeyReused {
		// A retry that raced its own first attempt: that attempt committed
		// between the check above and this commit, from another save, so
		// the hashes differ; the reason tells whether it is the same request.
		if res, done, rerr := s.replayDerived(ctx, userID, actor, key, reason); done || rerr != nil {
			return res, rerr
		}
	}
	return res, err
}

// replayDerived answers a derived mutation whose key already has a ledger
// entry: the stored answer under the same reason, IDEMPOTENCY_KEY_REUSED
// under another. done is false when the key has no entry yet.
func (s *Store) replayDerived(ctx context.Context, userID int64, actor save.Actor, key, reason string) (res MutationResult, done bool, err error) {
	e, ok, err := s.readLedgerDoc(ctx, userID, EntryID(actor, key))
	if err != nil || !ok {
		return MutationResult{}, false, err
	}
	if e.Reason != reason {
		return MutationResult{}, true, save.Errorf(save.CodeIdempotencyKeyReused,
			"this Idempotency-Key was already used for a different request; use a new key for a new request").
			WithDetail("entryId", e.EntryID).WithDetail("committedVersion", e.Version)
	}
	var out save.Outcome
	if err := json.Unmarshal([]byte(e.Response), &out); err != nil {
		return MutationResult{}, true, fmt.Errorf("store: entry %s has no readable response: %w", e.EntryID, err)
	}
	s.metrics.replays.Add(1)
	s.observer.MutationReplayed(ctx)
	return MutationResult{Outcome: out, Body: []byte(e.Response), Replayed: true}, true, nil
}
