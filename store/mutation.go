package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"

	"github.com/savesync/savesync/save"
)

// MutationRequest is one caller's mutation of one player.
type MutationRequest struct {
	UserID         int64
	Actor          save.Actor
	JobID          string // the game server's job id, when the caller is one
	IdempotencyKey string
	Mutation       save.Mutation
	// Once, when set, names something this mutation may do only once for
	// the player, whoever asks and under whatever key (the refund of one
	// purchase). The transaction records it beside the ledger entry; a later
	// mutation naming it is refused with ALREADY_APPLIED.
	Once string
	// Settles names once-only things this mutation makes moot without
	// doing them (a restore to before a purchase settles its refund): they
	// are recorded as done by this entry unless already done.
	Settles []string
}

// MutationResult is a mutation's answer: the outcome, the exact response
// body, and whether it was replayed from the idempotency record.
type MutationResult struct {
	Outcome  save.Outcome
	Body     []byte
	Replayed bool
}

// maxKeyLength bounds Idempotency-Key values.
const maxKeyLength = 128

// maxLedgerEntryBytes keeps a ledger entry (ops, old and new values and the
// stored response) under Firestore's 1 MiB document limit, with room for
// the fields Firestore counts beyond the encoded values.
const maxLedgerEntryBytes = 1<<20 - 16<<10

// maxGroupLedgerBytes bounds the ledger writes of one group commit, so the
// commit request, with the player document (at most 1 MiB) beside them,
// stays under Firestore's 10 MiB request limit. Members beyond it wait for
// the next commit.
const maxGroupLedgerBytes = 9<<20 - 64<<10

// errDeferred marks a group member left for the next commit because the
// group's request was full; it never reaches a caller.
var errDeferred = errors.New("store: deferred to the next commit")

// ApplyMutation commits one mutation exactly once per idempotency key.
//
// A mutation that would change nothing commits nothing: no ledger entry,
// no version bump, no event. It stores nothing under its key either, so a
// retry is evaluated again (answered unchanged again while the save still
// agrees); a key that did commit replays as always.
//
// Concurrent mutations of the same player on this instance are grouped into
// one transaction (one player write, one ledger entry each), so a hot player
// costs one commit per group instead of a queue of contended transactions.
// Each mutation in a group still succeeds or fails on its own.
//
// Errors: INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND, VERSION_CONFLICT
// (details carry the current version and save), INSUFFICIENT_FUNDS,
// LIMIT_EXCEEDED, IDEMPOTENCY_KEY_REUSED, SAVE_MIGRATION_FAILED,
// SCHEMA_TOO_NEW, UNAVAILABLE.
func (s *Store) ApplyMutation(ctx context.Context, req MutationRequest) (MutationResult, error) {
	r := s.ApplyMutations(ctx, []MutationRequest{req})[0]
	return r.Result, r.Err
}

// BatchResult is one mutation's answer within ApplyMutations.
type BatchResult struct {
	Result MutationResult
	Err    error
}

// ApplyMutations applies many mutations, of one or many players, as
// ApplyMutation does for each. Mutations of the same player are applied in
// the order given and usually share one transaction. Each result stands
// alone: one failure does not stop the others.
func (s *Store) ApplyMutations(ctx context.Context, reqs []MutationRequest) []BatchResult {
	out := make([]BatchResult, len(reqs))
	pending := make([]*pendingMutation, len(reqs))
	for i, req := range reqs {
		pm, err := s.prepare(req)
		if err != nil {
			out[i].Err = err
			continue
		}
		pending[i] = pm
		s.enqueue(pm)
	}
	for i, pm := range pending {
		if pm == nil {
			continue
		}
		select {
		case <-pm.done:
			out[i] = BatchResult{Result: pm.res, Err: pm.err}
		case <-ctx.Done():
			out[i].Err = save.Errorf(save.CodeUnavailable, "the request ended before the mutation finished; retry with the same Idempotency-Key")
		}
	}
	return out
}

// pendingMutation is a validated mutation waiting for its group's commit.
type pendingMutation struct {
	req     MutationRequest
	entryID string
	hash    string
	done    chan struct{}
	res     MutationResult
	err     error
}

// prepare validates a request without touching the database: a request
// that fails here commits nothing and stores nothing.
func (s *Store) prepare(req MutationRequest) (*pendingMutation, error) {
	if req.UserID <= 0 {
		return nil, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	if err := CheckIdempotencyKey(req.IdempotencyKey); err != nil {
		return nil, err
	}
	if !utf8.ValidString(req.JobID) {
		// Firestore stores only valid UTF-8, whatever check the caller's
		// edge made: such text would fail the commit of every mutation
		// grouped with this one. The domain checks the rest of the request.
		return nil, save.Errorf(save.CodeInvalidArgument, "jobId: must be valid UTF-8").WithDetail("field", "jobId")
	}
	pm := &pendingMutation{req: req, entryID: EntryID(req.Actor, req.IdempotencyKey), done: make(chan struct{})}
	if err := s.cfg.CheckRequest(pm.request()); err != nil {
		return nil, err
	}
	canon, err := json.Marshal(struct {
		UserID   int64         `json:"userId"`
		Mutation save.Mutation `json:"mutation"`
	}{req.UserID, req.Mutation})
	if err != nil {
		return nil, save.Errorf(save.CodeInvalidArgument, "the mutation cannot be encoded: %v", err)
	}
	sum := sha256.Sum256(canon)
	pm.hash = hex.EncodeToString(sum[:])
	return pm, nil
}

// request is the mutation as the domain judges and applies it.
func (pm *pendingMutation) request() save.Request {
	return save.Request{
		EntryID:  pm.entryID,
		Hash:     pm.hash,
		Actor:    pm.req.Actor,
		Mutation: pm.req.Mutation,
		Once:     pm.req.Once,
		Settles:  pm.req.Settles,
	}
}

// CheckIdempotencyKey validates an Idempotency-Key value.
// Errors: INVALID_ARGUMENT.
func CheckIdempotencyKey(key string) error {
	if key == "" {
		return save.Errorf(save.CodeInvalidArgument, "the Idempotency-Key header is required on every mutation: generate a UUID before the first attempt and reuse it on retries")
	}
	if len(key) > maxKeyLength {
		return save.Errorf(save.CodeInvalidArgument, "the Idempotency-Key must be at most %d characters", maxKeyLength)
	}
	for _, r := range key {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return save.Errorf(save.CodeInvalidArgument, "the Idempotency-Key must be printable ASCII")
		}
	}
	return nil
}

// EntryID derives a ledger entry id from the caller's scope and key, so a
// retry of the same request lands on the same document.
func EntryID(actor save.Actor, key string) string {
	sum := sha256.Sum256([]byte(string(actor.Kind) + "\x00" + actor.ID + "\x00" + key))
	return hex.EncodeToString(sum[:20])
}

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
		s.commitGroupSafely(ctx, userID, group)
		cancel()
		for _, pm := range group {
			close(pm.done)
		}
	}
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
			case pm.err != nil, pm.res.Outcome.Unchanged:
			case pm.res.Replayed:
				s.metrics.replays.Add(1)
			default:
				committed++
			}
		}
	}
	if err == nil && committed > 0 {
		s.metrics.commits.Add(1)
		s.metrics.groupedMuts.Add(committed)
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

// onceNames are the once-only things a mutation does or settles.
func (pm *pendingMutation) onceNames() []string {
	if pm.req.Once == "" {
		return pm.req.Settles
	}
	return append([]string{pm.req.Once}, pm.req.Settles...)
}

// checkWrites checks, before anything is sent, that Firestore can take a
// member's writes (its ledger entry first): every write encodable, which
// text that is not valid UTF-8 is not, and the entry within the document
// limit. It returns the writes' encoded size.
func checkWrites(writes []*firestorepb.Write) (int, error) {
	total := 0
	for i, w := range writes {
		b, err := proto.Marshal(w)
		if err != nil {
			return 0, save.Errorf(save.CodeInvalidArgument, "the mutation holds text that is not valid UTF-8, which cannot be stored: send valid UTF-8")
		}
		if size := proto.Size(w.GetUpdate()); i == 0 && size > maxLedgerEntryBytes {
			return 0, save.Errorf(save.CodeLimitExceeded,
				"this mutation's ledger entry would be %d bytes, over the %d a Firestore document can hold: split it into smaller mutations", size, maxLedgerEntryBytes).
				WithDetail("entryBytes", size).WithDetail("limit", maxLedgerEntryBytes)
		}
		total += len(b)
	}
	return total, nil
}

// onceWrite records that a once-only mutation was done, by which entry.
func (s *Store) onceWrite(userID int64, once string, out save.Outcome) *firestorepb.Write {
	return &firestorepb.Write{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: s.docName(oncePath(userID, once)), Fields: map[string]*firestorepb.Value{
			"once":        stringValue(once),
			"entryId":     stringValue(out.EntryID),
			"version":     intValue(out.Version),
			"committedAt": timeValue(out.CommittedAt),
		}}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}
}

// replay answers a mutation from its ledger entry: the answer stored there.
func replay(entry ledgerDoc) groupResult {
	body := []byte(entry.Response)
	var out save.Outcome
	if err := json.Unmarshal(body, &out); err != nil {
		return groupResult{err: err}
	}
	return groupResult{res: MutationResult{Outcome: out, Body: body, Replayed: true}}
}

// playerWrite writes the save and version after a group, creating the
// player document on its first mutation.
func (s *Store) playerWrite(p Player, saved map[string]any, version int64, now time.Time) (*firestorepb.Write, error) {
	saveValue, err := encodeValue(saved)
	if err != nil {
		return nil, err
	}
	return s.upsertPlayer(p, map[string]*firestorepb.Value{
		"version":       intValue(version),
		"schemaVersion": intValue(int64(s.cfg.SchemaVersion)),
		"save":          saveValue,
		"updatedAt":     timeValue(now),
	}, now), nil
}

// ledgerWrite creates a mutation's ledger entry: the audit record, the
// idempotency record (request hash and response) and the outbox entry.
func (s *Store) ledgerWrite(p Player, pm *pendingMutation, out save.Outcome, body []byte, schemaBefore int) (*firestorepb.Write, error) {
	ops, err := jsonTree(pm.req.Mutation.Ops)
	if err != nil {
		return nil, err
	}
	holder := ""
	if p.Session != nil && p.Session.ExpiresAt.After(out.CommittedAt) {
		holder = p.Session.JobID
	}
	doc := ledgerDoc{
		EntryID:         out.EntryID,
		UserID:          out.UserID,
		Kind:            ledgerKindMutation,
		IdempotencyKey:  pm.req.IdempotencyKey,
		RequestHash:     pm.hash,
		Actor:           pm.req.Actor,
		JobID:           pm.req.JobID,
		Reason:          pm.req.Mutation.Reason,
		ExpectedVersion: pm.req.Mutation.ExpectedVersion,
		VersionBefore:   out.VersionBefore,
		Version:         out.Version,
		SchemaBefore:    int64(schemaBefore),
		SchemaVersion:   int64(out.SchemaVersion),
		Changes:         out.Changes,
		ChangedPaths:    out.ChangedPaths,
		CommittedAt:     out.CommittedAt,
		Response:        string(body),
		Outbox: ledgerOutbox{
			Invalidate:  holder != "" && !(pm.req.Actor.Kind == save.ActorServer && pm.req.JobID == holder),
			HolderJobID: holder,
		},
	}
	doc.Ops, _ = ops.([]any)
	if s.retention > 0 {
		doc.ExpireAt = out.CommittedAt.Add(s.retention)
	}
	return s.ledgerCreate(doc)
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
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
