package store

import (
	"context"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// maxAuditScan bounds the ledger entries one search request reads when
// filters that Firestore cannot apply (the op kind, or a second equality
// filter) leave most of them out; the page then ends early with a cursor.
const maxAuditScan = 1000

// AuditQuery selects a player's ledger entries for support. Every filter
// is optional; From and To bound committedAt (From inclusive, To exclusive).
type AuditQuery struct {
	From, To       time.Time
	ActorKind      save.ActorKind
	ActorID        string
	Op             string
	IdempotencyKey string
	// Cursor is NextCursor of the previous page ("" for the first).
	Cursor string
	// Limit is the page size (DefaultLedgerPage when 0, at most MaxLedgerPage).
	Limit int
}

// AuditEntry is a ledger entry as support sees it: the companion's view
// plus the idempotency key and the game server's job id.
type AuditEntry struct {
	save.LedgerEntry
	IdempotencyKey string `json:"idempotencyKey"`
	JobID          string `json:"jobId,omitempty"`
	// BulkJobID names the bulk job that made the change, when one did.
	BulkJobID       string `json:"bulkJobId,omitempty"`
	ExpectedVersion *int64 `json:"expectedVersion,omitempty"`
	// Response is the stored answer to the request, for replays.
	Response string `json:"-"`
}

// AuditPage is one page of search results, newest first. NextCursor, when
// not empty, continues the search with older entries; a page may hold
// fewer than Limit entries (even none) and still have a NextCursor when
// the search read its scan budget.
type AuditPage struct {
	Entries    []AuditEntry `json:"entries"`
	NextCursor string       `json:"nextCursor,omitempty"`
}

// auditCursor is the position after the last entry a page returned.
type auditCursor struct {
	At      int64 `json:"t"` // committedAt, Unix microseconds
	Version int64 `json:"v"`
}

// SearchLedger searches a player's ledger, newest first, by commit time,
// actor, op kind and idempotency key. The time range, and one of the
// idempotency key, the actor kind (with the actor id) or the actor id,
// are answered by Firestore with the indexes in firestore.indexes.json;
// the other filters are applied while reading.
// Errors: INVALID_ARGUMENT (bad limit, cursor, range or actor kind).
func (s *Store) SearchLedger(ctx context.Context, userID int64, q AuditQuery) (_ AuditPage, err error) {
	defer wrapOp(&err, "store.SearchLedger(%d)", userID)
	if userID <= 0 {
		return AuditPage{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLedgerPage
	case q.Limit < 0 || q.Limit > MaxLedgerPage:
		return AuditPage{}, save.Errorf(save.CodeInvalidArgument, "limit must be between 1 and %d, got %d", MaxLedgerPage, q.Limit).WithDetail("field", "limit")
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"from", q.From}, {"to", q.To}} {
		if !t.at.IsZero() && !inFirestoreRange(t.at) {
			return AuditPage{}, save.Errorf(save.CodeInvalidArgument, "%s must be a time between the years 1 and 9999", t.name).WithDetail("field", t.name)
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return AuditPage{}, save.Errorf(save.CodeInvalidArgument, "from must be before to").WithDetail("field", "from")
	}
	switch q.ActorKind {
	case "", save.ActorServer, save.ActorCompanion, save.ActorAdmin, save.ActorSystem:
	default:
		return AuditPage{}, save.Errorf(save.CodeInvalidArgument, "actorKind must be server, companion, admin or system, got %q", q.ActorKind).WithDetail("field", "actorKind")
	}
	if q.Op != "" && save.StrategyOf(q.Op) == "" {
		return AuditPage{}, save.Errorf(save.CodeInvalidArgument, "op %q is not an op kind", q.Op).WithDetail("field", "op")
	}

	fq := s.fs.Collection(ledgerCollectionPath(userID)).Query
	switch {
	case q.IdempotencyKey != "":
		fq = fq.Where(ledgerIdempotencyKey, "==", q.IdempotencyKey)
	case q.ActorKind != "":
		fq = fq.Where(ledgerActorKind, "==", string(q.ActorKind))
		if q.ActorID != "" {
			fq = fq.Where(ledgerActorID, "==", q.ActorID)
		}
	case q.ActorID != "":
		fq = fq.Where(ledgerActorID, "==", q.ActorID)
	}
	if !q.From.IsZero() {
		fq = fq.Where(ledgerCommittedAt, ">=", q.From.UTC())
	}
	if !q.To.IsZero() {
		fq = fq.Where(ledgerCommittedAt, "<", q.To.UTC())
	}
	fq = fq.OrderBy(ledgerCommittedAt, firestore.Desc).OrderBy(ledgerVersion, firestore.Desc)
	if q.Cursor != "" {
		c, err := decodeAuditCursor(q.Cursor)
		if err != nil {
			return AuditPage{}, err
		}
		fq = fq.StartAfter(time.UnixMicro(c.At).UTC(), c.Version)
	}

	it := fq.Limit(maxAuditScan).Documents(ctx)
	defer it.Stop()
	page := AuditPage{Entries: []AuditEntry{}}
	var last auditCursor
	scanned := 0
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			if scanned == maxAuditScan {
				page.NextCursor = encodeCursor(last)
			}
			return page, nil
		}
		if err != nil {
			return AuditPage{}, err
		}
		scanned++
		e := ledgerDocOf(snap).auditEntry()
		last = auditCursor{At: e.CommittedAt.UnixMicro(), Version: e.Version}
		if !q.matches(e) {
			continue
		}
		if len(page.Entries) == q.Limit {
			// One more match exists: the page is full and a next one is not empty.
			p := page.Entries[len(page.Entries)-1]
			page.NextCursor = encodeCursor(auditCursor{At: p.CommittedAt.UnixMicro(), Version: p.Version})
			return page, nil
		}
		page.Entries = append(page.Entries, e)
	}
}

// matches applies every filter to an entry, including those Firestore applied.
func (q AuditQuery) matches(e AuditEntry) bool {
	if q.IdempotencyKey != "" && e.IdempotencyKey != q.IdempotencyKey {
		return false
	}
	if q.ActorKind != "" && e.Actor.Kind != q.ActorKind {
		return false
	}
	if q.ActorID != "" && e.Actor.ID != q.ActorID {
		return false
	}
	if q.Op == "" {
		return true
	}
	ops, _ := e.Ops.([]any)
	for _, op := range ops {
		if m, ok := op.(map[string]any); ok && m["op"] == q.Op {
			return true
		}
	}
	return false
}

// LedgerEntryByID reads one ledger entry; ok is false when it does not exist.
func (s *Store) LedgerEntryByID(ctx context.Context, userID int64, entryID string) (e AuditEntry, ok bool, err error) {
	defer wrapOp(&err, "store.LedgerEntryByID(%d, %s)", userID, entryID)
	d, ok, err := s.readLedgerDoc(ctx, userID, entryID)
	if err != nil || !ok {
		return AuditEntry{}, false, err
	}
	return d.auditEntry(), true, nil
}

// readLedgerDoc reads one ledger entry outside any transaction; ok is
// false when it does not exist.
// Errors: INVALID_ARGUMENT (a bad user or entry id).
func (s *Store) readLedgerDoc(ctx context.Context, userID int64, entryID string) (d ledgerDoc, ok bool, err error) {
	if userID <= 0 {
		return ledgerDoc{}, false, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	if !validEntryID(entryID) {
		return ledgerDoc{}, false, save.Errorf(save.CodeInvalidArgument, "entry id %q is not one this service issued", entryID).WithDetail("field", "entryId")
	}
	snap, err := s.fs.Doc(ledgerPath(userID, entryID)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return ledgerDoc{}, false, nil
	}
	if err != nil {
		return ledgerDoc{}, false, err
	}
	return ledgerDocOf(snap), true, nil
}

// validEntryID accepts the ids EntryID makes: 40 lower-case hex digits.
func validEntryID(id string) bool {
	if len(id) != 40 {
		return false
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

func decodeAuditCursor(s string) (auditCursor, error) {
	var c auditCursor
	bad := save.Errorf(save.CodeInvalidArgument, "cursor is not one this service returned: pass nextCursor from the previous page unchanged").WithDetail("field", "cursor")
	if err := decodeCursor(s, &c, bad); err != nil || c.Version <= 0 || !inFirestoreRange(time.UnixMicro(c.At)) {
		return auditCursor{}, bad
	}
	return c, nil
}
