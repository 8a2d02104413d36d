package store

import (
	"context"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"

	"github.com/savesync/savesync/save"
)

// Ledger page sizes.
const (
	// DefaultLedgerPage is the page size when the caller names none.
	DefaultLedgerPage = 20
	// MaxLedgerPage bounds one page of ledger history.
	MaxLedgerPage = 100
)

// LedgerPage is one page of history, newest first. NextCursor, when not
// empty, fetches the next (older) page.
type LedgerPage struct {
	Entries    []save.LedgerEntry `json:"entries"`
	NextCursor string             `json:"nextCursor,omitempty"`
}

// ledgerCursor is what an opaque cursor carries: the version of the last
// entry returned. Versions are unique per player and never reused, so
// "older than this version" resumes exactly, whatever is committed meanwhile.
type ledgerCursor struct {
	Before int64 `json:"b"`
}

// ListLedger returns a player's ledger entries newest first (by version),
// limit at a time (DefaultLedgerPage when 0, at most MaxLedgerPage), from
// an opaque cursor returned by the previous page ("" for the first).
// Errors: INVALID_ARGUMENT (bad cursor or limit).
func (s *Store) ListLedger(ctx context.Context, userID int64, cursor string, limit int) (_ LedgerPage, err error) {
	defer wrapOp(&err, "store.ListLedger(%d)", userID)
	if userID <= 0 {
		return LedgerPage{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	switch {
	case limit == 0:
		limit = DefaultLedgerPage
	case limit < 0 || limit > MaxLedgerPage:
		return LedgerPage{}, save.Errorf(save.CodeInvalidArgument, "limit must be between 1 and %d, got %d", MaxLedgerPage, limit).WithDetail("field", "limit")
	}
	q := s.fs.Collection(ledgerCollectionPath(userID)).OrderBy(ledgerVersion, firestore.Desc)
	if cursor != "" {
		c, err := decodeLedgerCursor(cursor)
		if err != nil {
			return LedgerPage{}, err
		}
		q = q.Where(ledgerVersion, "<", c.Before)
	}
	it := q.Limit(limit + 1).Documents(ctx)
	defer it.Stop()
	page := LedgerPage{Entries: []save.LedgerEntry{}}
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return LedgerPage{}, err
		}
		if len(page.Entries) == limit {
			last := page.Entries[len(page.Entries)-1]
			page.NextCursor = encodeCursor(ledgerCursor{Before: last.Version})
			break
		}
		page.Entries = append(page.Entries, ledgerDocOf(snap).entry())
	}
	return page, nil
}

func decodeLedgerCursor(s string) (ledgerCursor, error) {
	var c ledgerCursor
	bad := save.Errorf(save.CodeInvalidArgument, "cursor is not one this service returned: pass nextCursor from the previous page unchanged").WithDetail("field", "cursor")
	if err := decodeCursor(s, &c, bad); err != nil || c.Before <= 0 {
		return ledgerCursor{}, bad
	}
	return c, nil
}
