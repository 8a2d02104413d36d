package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/savesync/savesync/save"
)

// maxGroupLedgerBytes bounds the ledger writes of one group commit, so the
// commit request, with the player document (at most 1 MiB) beside them,
// stays under Firestore's 10 MiB request limit. Members beyond it wait for
// the next commit.
const maxGroupLedgerBytes = 9<<20 - 64<<10

// errDeferred marks a group member left for the next commit because the
// group's request was full; it never reaches a caller.
var errDeferred = errors.New("store: deferred to the next commit")

// playerQueue holds one player's mutations waiting for a commit.
type playerQueue struct {
	pending []*pendingMutation
}

// enqueue adds a mutation to its player's queue, starting a committer for
// the player when none runs.
func (s *Store) enqueue(pm *pendingMutation) {
	s.queuesMu.Lock()
	q, running := s.queues[pm.req.UserID]
	if !running {
		q = &playerQueue{}
		s.queues[pm.req.UserID] = q
	}
	q.pending = append(q.pending, pm)
	s.queuesMu.Unlock()
	if !running {
		go s.drain(pm.req.UserID, q)
	}
}

// drain commits a player's queued mutations group by group until none are left.
func (s *Store) drain(userID int64, q *playerQueue) {
	for {
		s.queuesMu.Lock()
		n := min(len(q.pending), s.maxBatch)
		if n == 0 {
			delete(s.queues, userID)
			s.queuesMu.Unlock()
			return
		}
		group := q.pending[:n:n]
		q.pending = q.pending[n:]
		s.queuesMu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		ctx, span := s.startCommitSpan(ctx, userID, group)
		s.commitGroupSafely(ctx, userID, group)
		span.End()
		cancel()
		for _, pm := range group {
			close(pm.done)
		}
	}
}

// startCommitSpan opens the span of a group's commit: a child of the
// first member's request span, linked to the others', so the Firestore
// calls of the commit show under a request that waited for them.
func (s *Store) startCommitSpan(ctx context.Context, userID int64, group []*pendingMutation) (context.Context, trace.Span) {
	var parent trace.SpanContext
	var links []trace.Link
	for _, pm := range group {
		switch {
		case !pm.span.IsValid():
		case !parent.IsValid():
			parent = pm.span
		default:
			links = append(links, trace.Link{SpanContext: pm.span})
		}
	}
	if !parent.IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return s.tracer.Start(trace.ContextWithSpanContext(ctx, parent), "savesync.store.commitGroup",
		trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int64("savesync.user_id", userID), attribute.Int("savesync.group.size", len(group))))
}

// commitGroupSafely commits a group; a panic outside the transaction body
// (which isolates its own) fails the group's mutations with INTERNAL instead
// of taking the process down with callers still waiting; a retry with the
// same key replays whatever did commit.
func (s *Store) commitGroupSafely(ctx context.Context, userID int64, group []*pendingMutation) {
	defer func() {
		if r := recover(); r != nil {
			for _, pm := range group {
				pm.res, pm.err = MutationResult{}, fmt.Errorf("store: committing player %d panicked: %v", userID, r)
			}
		}
	}()
	s.commitGroup(ctx, userID, group)
}

// groupResult is one mutation's result within one transaction attempt.
type groupResult struct {
	res MutationResult
	err error
}

// commitGroup runs one transaction for a group of one player's mutations.
//
// A member that cannot be committed fails alone. Its own checks run member
// by member inside the attempt (a refused op, an entry over the document
// limit, text Firestore cannot store, a panic while applying it), and a
// member that fails leaves the state as the members before it made it. A
// failure of the attempt as a whole that a member may have caused (the
// database refusing the commit, a write the client cannot encode) splits
// the group into two halves committed in order, until the cause stands
// alone and fails by itself.
func (s *Store) commitGroup(ctx context.Context, userID int64, group []*pendingMutation) {
	names := []string{s.docName(playerPath(userID))}
	for _, pm := range group {
		names = append(names, s.docName(ledgerPath(userID, pm.entryID)))
		if pm.req.Once != "" {
			names = append(names, s.docName(oncePath(userID, pm.req.Once)))
		}
		for _, once := range pm.req.Settles {
			names = append(names, s.docName(oncePath(userID, once)))
		}
	}
	var results []groupResult
	var committed int64
	var deferred []*pendingMutation
	_, err := s.runTxn(ctx, dedupe(names), func(docs map[string]*firestorepb.Document) (writes []*firestorepb.Write, err error) {
		defer func() {
			// Returning (rather than unwinding) rolls the attempt back, so
			// its locks do not hold up the next group.
			if r := recover(); r != nil {
				writes, err = nil, fmt.Errorf("store: applying the mutations of player %d panicked: %v\n%s", userID, r, debug.Stack())
			}
		}()
		results, writes, err = s.applyGroup(userID, group, docs)
		return writes, err
	})
	if err != nil && len(group) > 1 && splittable(ctx, err) {
		half := len(group) / 2
		s.commitGroup(ctx, userID, group[:half])
		s.commitGroup(ctx, userID, group[half:])
		return
	}
	if unsendable(err) {
		// Alone, the mutation's own text is what cannot be encoded.
		err = save.Errorf(save.CodeInvalidArgument, "the mutation holds text that is not valid UTF-8, which cannot be stored: send valid UTF-8")
	}
	for i, pm := range group {
		switch {
		case err != nil:
			pm.err = err
			wrapOp(&pm.err, "store.ApplyMutation(%d, %s)", userID, pm.entryID)
		case errors.Is(results[i].err, errDeferred):
			deferred = append(deferred, pm)
		default:
			pm.res, pm.err = results[i].res, results[i].err
			wrapOp(&pm.err, "store.ApplyMutation(%d, %s)", userID, pm.entryID)
			switch {
			case pm.err != nil:
				if save.ErrorCode(pm.err) == save.CodeVersionConflict {
					s.observer.VersionConflict(ctx)
				}
			case pm.res.Outcome.Unchanged:
			case pm.res.Replayed:
				s.metrics.replays.Add(1)
				s.observer.MutationReplayed(ctx)
			default:
				committed++
			}
		}
	}
	if err == nil && committed > 0 {
		s.metrics.commits.Add(1)
		s.metrics.groupedMuts.Add(committed)
		s.observer.TransactionCommitted(ctx, int(committed))
		if s.onCommit != nil {
			s.onCommit()
		}
	}
	if len(deferred) > 0 {
		s.commitGroup(ctx, userID, deferred)
	}
}

// splittable reports whether a group's failed commit may be one member's
// doing, so that committing it in halves can isolate that member: any
// failure but a domain error (those concern the whole player, such as a
// failed migration or a save still busy after every retry) or the end of
// the committer's time.
func splittable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	_, domain := save.AsError(err)
	return !domain
}

// applyGroup answers a group's mutations on the documents read by this
// attempt and returns each mutation's result and the writes. The domain
// answers the whole group in one call (save.Config.ApplyGroup); the store
// turns the answers into writes. A member whose writes Firestore cannot
// take fails alone, and one that does not fit the commit request waits for
// the next commit with the members after it: the domain then answers the
// group again without them, so the others apply as if they had not come.
func (s *Store) applyGroup(userID int64, group []*pendingMutation, docs map[string]*firestorepb.Document) ([]groupResult, []*firestorepb.Write, error) {
	p := s.decodePlayer(userID, docs[s.docName(playerPath(userID))])
	results := make([]groupResult, len(group))
	g, recorded := s.groupOf(p, group, docs)
	live := s.runBeforeApply(group, results)
	for {
		g.Requests = g.Requests[:0]
		for _, i := range live {
			g.Requests = append(g.Requests, group[i].request())
		}
		answered, err := s.cfg.ApplyGroup(g)
		if err != nil {
			return nil, nil, err
		}
		writes, rest, err := s.groupWrites(p, g, group, live, answered, recorded, results)
		if err != nil {
			return nil, nil, err
		}
		if len(rest) == len(live) {
			return results, writes, nil
		}
		live = rest
	}
}

// groupOf is the group as the domain takes it: the player's save as read,
// with the ledger entries and once-only records the members name. It also
// returns the ledger entries read, by entry id, for their stored answers.
func (s *Store) groupOf(p Player, group []*pendingMutation, docs map[string]*firestorepb.Document) (save.Group, map[string]ledgerDoc) {
	g := save.Group{
		UserID:   p.UserID,
		Save:     p.Raw,
		Schema:   p.SchemaVersion,
		Version:  p.Version,
		Now:      s.now().UTC().Truncate(time.Microsecond),
		Recorded: make(map[string]save.Recorded),
		Done:     make(map[string]string),
		Requests: make([]save.Request, 0, len(group)),
	}
	recorded := make(map[string]ledgerDoc)
	for _, pm := range group {
		if doc, ok := docs[s.docName(ledgerPath(p.UserID, pm.entryID))]; ok {
			e := ledgerDocIn(pm.entryID, doc)
			recorded[pm.entryID] = e
			g.Recorded[pm.entryID] = save.Recorded{Hash: e.RequestHash, Version: e.Version}
		}
		for _, once := range pm.onceNames() {
			if rec, ok := docs[s.docName(oncePath(p.UserID, once))]; ok {
				g.Done[once] = fieldString(rec.GetFields(), "entryId")
			}
		}
	}
	return g, recorded
}

// runBeforeApply runs the test hook, when set, on every member of the
// attempt; a member whose hook panics fails alone. It returns the indexes
// of the members still in the group.
func (s *Store) runBeforeApply(group []*pendingMutation, results []groupResult) []int {
	live := make([]int, 0, len(group))
	for i, pm := range group {
		if s.beforeApply != nil {
			if err := s.callBeforeApply(pm); err != nil {
				results[i] = groupResult{err: err}
				continue
			}
		}
		live = append(live, i)
	}
	return live
}

// callBeforeApply runs the test hook on one member, turning its panic into
// the member's error.
func (s *Store) callBeforeApply(pm *pendingMutation) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("store: applying mutation %s of player %d panicked: %v\n%s", pm.entryID, pm.req.UserID, v, debug.Stack())
		}
	}()
	s.beforeApply(&pm.req)
	return nil
}

// groupWrites turns the domain's answers to the live members into their
// results and the attempt's writes: the player's, then each committing
// member's ledger entry and once-only records. When a member's writes
// cannot be sent, or do not fit the commit request, it returns the members
// to answer again without it (fewer than live); the writes are then nil.
func (s *Store) groupWrites(p Player, g save.Group, group []*pendingMutation, live []int, answered save.GroupResult, recorded map[string]ledgerDoc, results []groupResult) ([]*firestorepb.Write, []int, error) {
	var ledger []*firestorepb.Write
	ledgerBytes := 0
	for k, a := range answered.Answers {
		i, pm := live[k], group[live[k]]
		switch {
		case a.Err != nil:
			results[i] = groupResult{err: a.Err}
		case a.Replay == save.ReplayRecorded:
			results[i] = replay(recorded[pm.entryID])
		case a.Replay == save.ReplayInGroup:
			results[i] = results[live[a.ReplayOf]]
			results[i].res.Replayed = true
		case a.Outcome.Unchanged:
			body, err := json.Marshal(a.Outcome)
			if err != nil {
				results[i] = groupResult{err: fmt.Errorf("store: encoding the outcome of %s: %w", pm.entryID, err)}
				continue
			}
			results[i] = groupResult{res: MutationResult{Outcome: a.Outcome, Body: body}}
		default:
			body, writes, size, err := s.entryWrites(p, pm, a, g.Schema)
			if err != nil {
				results[i] = groupResult{err: err}
				return nil, slices.Delete(slices.Clone(live), k, k+1), nil
			}
			if len(ledger) > 0 && ledgerBytes+size > maxGroupLedgerBytes {
				// Keep the group's order: once one member waits, the rest do.
				for _, j := range live[k:] {
					results[j] = groupResult{err: errDeferred}
				}
				return nil, live[:k], nil
			}
			ledger = append(ledger, writes...)
			ledgerBytes += size
			results[i] = groupResult{res: MutationResult{Outcome: a.Outcome, Body: body}}
		}
	}
	if len(ledger) == 0 {
		return nil, live, nil
	}
	pw, err := s.playerWrite(p, answered.Save, answered.Version, g.Now)
	if err != nil {
		return nil, live, err
	}
	return append([]*firestorepb.Write{pw}, ledger...), live, nil
}

// entryWrites are a committing member's writes: its ledger entry, then the
// records of the once-only things it does. It also returns the answer's
// body and the writes' encoded size.
func (s *Store) entryWrites(p Player, pm *pendingMutation, a save.Answer, schemaBefore int) ([]byte, []*firestorepb.Write, int, error) {
	body, err := json.Marshal(a.Outcome)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("store: encoding the outcome of %s: %w", pm.entryID, err)
	}
	w, err := s.ledgerWrite(p, pm, a.Outcome, body, schemaBefore)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("store: encoding ledger entry %s: %w", pm.entryID, err)
	}
	writes := []*firestorepb.Write{w}
	for _, once := range a.Records {
		writes = append(writes, s.onceWrite(p.UserID, once, a.Outcome))
	}
	size, err := checkWrites(writes)
	if err != nil {
		return nil, nil, 0, err
	}
	return body, writes, size, nil
}

func dedupe(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := names[:0:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
