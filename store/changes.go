package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/savesync/savesync/save"
)

// Invalidation is one save changed from elsewhere while a game server
// held the player: the server refetches the player unless it already has
// Version. Actor says who changed it as save.Actor.SeenByGameServers
// shows it.
type Invalidation struct {
	UserID       int64      `json:"userId"`
	Version      int64      `json:"version"`
	ChangedPaths []string   `json:"changedPaths"`
	Actor        save.Actor `json:"actor"`
	CommittedAt  time.Time  `json:"committedAt"`
}

// ChangesPage is one answer of the changes long-poll. Cursor goes into the
// next call; it is opaque to callers.
type ChangesPage struct {
	Changes []Invalidation `json:"changes"`
	Cursor  string         `json:"cursor"`
}

// Changes answers the long-poll a game server uses, as a fallback to Open
// Cloud messaging, to learn which of its players' saves changed from
// elsewhere. It reads the ledger, so it sees commits of every instance of
// the service.
type Changes struct {
	st       *Store
	poll     time.Duration
	maxWait  time.Duration
	settle   time.Duration
	pageSize int
	maxSeen  int
}

// ChangesOptions tune Changes. Zero values take the defaults.
type ChangesOptions struct {
	// PollInterval is how often a waiting long-poll queries the ledger (1 s).
	PollInterval time.Duration
	// MaxWait caps how long one call waits for a change (25 s).
	MaxWait time.Duration
	// Settle is how long after its commit time an entry may still become
	// visible (10 s). Commit times come from the committing instance's clock
	// before the commit, so an entry can appear after a later-stamped one;
	// entries this recent are re-read and filtered by id instead of by time.
	Settle time.Duration
	// PageSize bounds the changes of one answer (100).
	PageSize int
}

// NewChanges returns the long-poll reader over a store.
func NewChanges(st *Store, opts ChangesOptions) *Changes {
	c := &Changes{st: st, poll: opts.PollInterval, maxWait: opts.MaxWait, settle: opts.Settle, pageSize: opts.PageSize, maxSeen: 32}
	if c.poll <= 0 {
		c.poll = time.Second
	}
	if c.maxWait <= 0 {
		c.maxWait = 25 * time.Second
	}
	if c.settle <= 0 {
		c.settle = 10 * time.Second
	}
	if c.pageSize <= 0 {
		c.pageSize = 100
	}
	return c
}

// MaxWait is the longest a Wait call waits.
func (c *Changes) MaxWait() time.Duration { return c.maxWait }

// Wait returns the changes to players held by jobID committed after
// cursor, waiting up to wait (capped at MaxWait) for the first one. An
// empty cursor starts from the recent past (the settle window), so a
// server that just started polling may see a change it already has; the
// version tells it so. When the wait ends, or ctx ends, with nothing new,
// the page is empty and carries a cursor to continue from.
// Errors: INVALID_ARGUMENT for a bad job id or cursor.
func (c *Changes) Wait(ctx context.Context, jobID, cursor string, wait time.Duration) (ChangesPage, error) {
	if jobID == "" || len(jobID) > 128 {
		return ChangesPage{}, save.Errorf(save.CodeInvalidArgument, "jobId must be the game server's game.JobId (1 to 128 characters)")
	}
	cur, err := c.decodeCursor(cursor)
	if err != nil {
		return ChangesPage{}, err
	}
	wait = min(max(wait, 0), c.maxWait)
	deadline := time.Now().Add(wait)
	for {
		page, next, err := c.read(ctx, jobID, cur)
		if err != nil {
			if ctx.Err() != nil {
				return ChangesPage{Changes: []Invalidation{}, Cursor: cur.encode()}, nil
			}
			return ChangesPage{}, err
		}
		cur = next
		left := time.Until(deadline)
		if len(page.Changes) > 0 || left <= 0 {
			return page, nil
		}
		t := time.NewTimer(min(c.poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return page, nil
		case <-t.C:
		}
	}
}

// changesCursor is where a long-poll continues: entries committed at or
// after From, except those whose id prefixes are in Seen (all of them
// committed at or after From).
type changesCursor struct {
	From int64    `json:"f"` // microseconds since the epoch
	Seen []string `json:"s,omitempty"`
}

// seenID is how a cursor remembers an entry: a prefix of the hash of its
// path (player and entry id).
func seenID(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hex.EncodeToString(sum[:])[:seenPrefix]
}

// seenPrefix is how much of an entry's hash a cursor keeps: 48 bits, ample
// for the few entries of one settle window.
const seenPrefix = 12

func (c changesCursor) encode() string { return encodeCursor(c) }

func (c *Changes) decodeCursor(s string) (changesCursor, error) {
	if s == "" {
		return changesCursor{From: c.st.now().Add(-c.settle).UnixMicro()}, nil
	}
	bad := save.Errorf(save.CodeInvalidArgument, "the cursor is not one this service issued; pass the cursor of the previous answer, or none to start from now")
	var cur changesCursor
	if err := decodeCursor(s, &cur, bad); err != nil || cur.From <= 0 || !inFirestoreRange(time.UnixMicro(cur.From)) {
		return changesCursor{}, bad
	}
	for _, id := range cur.Seen {
		if len(id) != seenPrefix {
			return changesCursor{}, bad
		}
	}
	return cur, nil
}

// read queries once and returns the new changes and the next cursor.
func (c *Changes) read(ctx context.Context, jobID string, cur changesCursor) (ChangesPage, changesCursor, error) {
	from := time.UnixMicro(cur.From).UTC()
	docs, err := c.st.fs.CollectionGroup(ledgerCollection).
		Where(ledgerHolderJobID, "==", jobID).
		Where(ledgerInvalidate, "==", true).
		Where(ledgerCommittedAt, ">=", from).
		OrderBy(ledgerCommittedAt, firestore.Asc).
		Limit(len(cur.Seen) + c.pageSize).
		Documents(ctx).GetAll()
	if err != nil {
		return ChangesPage{}, cur, fmt.Errorf("store.Changes(%s): %w", jobID, err)
	}
	seen := make(map[string]bool, len(cur.Seen))
	for _, id := range cur.Seen {
		seen[id] = true
	}
	type read struct {
		at     time.Time
		prefix string
	}
	var kept []read // entries the next cursor must remember
	page := ChangesPage{Changes: []Invalidation{}}
	for _, d := range docs {
		e := ledgerDocOf(d)
		// The entry's full path, not its id: the same caller and key make
		// the same id under different players.
		prefix := seenID(d.Ref.Path)
		if seen[prefix] {
			kept = append(kept, read{e.CommittedAt, prefix})
			continue
		}
		if len(page.Changes) == c.pageSize {
			continue
		}
		page.Changes = append(page.Changes, e.invalidation())
		kept = append(kept, read{e.CommittedAt, prefix})
	}

	// Move From up to the settle window behind the newest entry read, but
	// never past the last change returned (later ones may not have been).
	next := changesCursor{From: cur.From}
	var newest, lastReturned int64
	for _, k := range kept {
		newest = max(newest, k.at.UnixMicro())
	}
	if n := len(page.Changes); n > 0 {
		lastReturned = page.Changes[n-1].CommittedAt.UnixMicro()
	} else {
		lastReturned = newest
	}
	next.From = max(next.From, min(newest-c.settle.Microseconds(), lastReturned))
	sort.Slice(kept, func(i, j int) bool { return kept[i].at.Before(kept[j].at) })
	// Keep the cursor short: forget the oldest remembered entries by moving
	// From just past them, within the same bound.
	for len(kept) > 0 {
		var inWindow int
		for _, k := range kept {
			if k.at.UnixMicro() >= next.From {
				inWindow++
			}
		}
		if inWindow <= c.maxSeen {
			break
		}
		oldest := kept[0].at.UnixMicro()
		if oldest+1 > lastReturned {
			break
		}
		next.From = max(next.From, oldest+1)
		kept = kept[1:]
	}
	for _, k := range kept {
		if k.at.UnixMicro() >= next.From {
			next.Seen = append(next.Seen, k.prefix)
		}
	}
	page.Cursor = next.encode()
	return page, next, nil
}
