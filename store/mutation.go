package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
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

// Outcome is what a committed mutation answers. Its JSON is stored in the
// ledger entry and returned byte for byte on every replay.
type Outcome struct {
	UserID        int64         `json:"userId"`
	EntryID       string        `json:"entryId"`
	VersionBefore int64         `json:"versionBefore"`
	Version       int64         `json:"version"`
	SchemaVersion int           `json:"schemaVersion"`
	CommittedAt   time.Time     `json:"committedAt"`
	ChangedPaths  []string      `json:"changedPaths"`
	Changes       []save.Change `json:"changes"`
	// Unchanged is set on the answer to a mutation that would change
	// nothing (a setting set to the value it has, a remove of an absent
	// element): nothing was written, Version is the current version and
	// VersionBefore equals it, EntryID is empty (no ledger entry) and
	// CommittedAt is when the save was read. Absent on every committed answer.
	Unchanged bool `json:"unchanged,omitempty"`
}

// MutationResult is a mutation's answer: the outcome, the exact response
// body, and whether it was replayed from the idempotency record.
type MutationResult struct {
	Outcome  Outcome
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
	if err := checkRequestText(req); err != nil {
		return nil, err
	}
	if err := s.cfg.CheckMutation(req.Mutation, req.Actor.Kind); err != nil {
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
	return &pendingMutation{
		req:     req,
		entryID: EntryID(req.Actor, req.IdempotencyKey),
		hash:    hex.EncodeToString(sum[:]),
		done:    make(chan struct{}),
	}, nil
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

// checkRequestText refuses the request's own text that Firestore cannot
// store (strings that are not valid UTF-8), whatever check the caller's
// edge made: such text would fail the commit of every mutation grouped with
// this one. The ops' text is checked with the ops (CheckMutation).
// Errors: INVALID_ARGUMENT naming the field.
func checkRequestText(req MutationRequest) error {
	fields := []struct{ name, value string }{
		{"jobId", req.JobID},
		{"actor.id", req.Actor.ID},
		{"once", req.Once},
	}
	for i, once := range req.Settles {
		fields = append(fields, struct{ name, value string }{fmt.Sprintf("settles[%d]", i), once})
	}
	for _, f := range fields {
		if !utf8.ValidString(f.value) {
			return save.Errorf(save.CodeInvalidArgument, "%s: must be valid UTF-8", f.name).WithDetail("field", f.name)
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
		case errors.Is(results[i].err, errDeferred):
			deferred = append(deferred, pm)
		default:
			pm.res, pm.err = results[i].res, results[i].err
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

// applyGroup applies a group's mutations in order on the state read by
// this attempt and returns each mutation's result and the writes.
func (s *Store) applyGroup(userID int64, group []*pendingMutation, docs map[string]*firestorepb.Document) ([]groupResult, []*firestorepb.Write, error) {
	p := s.decodePlayer(userID, docs[s.docName(playerPath(userID))])
	results := make([]groupResult, len(group))

	// Replays are answered before anything else: they need no state.
	fresh := make([]int, 0, len(group))
	for i, pm := range group {
		if doc, ok := docs[s.docName(ledgerPath(userID, pm.entryID))]; ok {
			results[i] = replay(pm, ledgerDocIn(pm.entryID, doc))
			continue
		}
		fresh = append(fresh, i)
	}
	if len(fresh) == 0 {
		return results, nil, nil
	}

	st, err := s.currentState(p)
	if err != nil {
		return nil, nil, err
	}
	g := &groupAttempt{
		s:            s,
		p:            p,
		docs:         docs,
		st:           st,
		migrated:     st,
		schemaBefore: p.SchemaVersion,
		version:      p.Version,
		now:          s.now().UTC().Truncate(time.Microsecond),
		onceDone:     make(map[string]string),
	}
	if !p.Exists {
		g.schemaBefore = s.cfg.SchemaVersion
	}
	inGroup := make(map[string]int)
	for _, i := range fresh {
		pm := group[i]
		if g.full {
			// Keep the group's order: once one member waits, the rest do.
			results[i].err = errDeferred
			continue
		}
		if j, dup := inGroup[pm.entryID]; dup {
			results[i] = replayInGroup(pm, group[j], results[j])
			continue
		}
		results[i] = g.apply(pm)
		if results[i].err == nil && !results[i].res.Outcome.Unchanged {
			// A later duplicate replays this answer; the duplicate of an
			// unchanged answer is evaluated again, as it would be in a
			// later group, since nothing was stored under the key.
			inGroup[pm.entryID] = i
		}
	}
	if len(g.ledger) == 0 {
		return results, nil, nil
	}
	pw, err := s.playerWrite(p, g.st, g.version, g.now)
	if err != nil {
		return nil, nil, err
	}
	return results, append([]*firestorepb.Write{pw}, g.ledger...), nil
}

// groupAttempt is what one transaction attempt carries from one member of
// a group to the next: the state so far and the writes of the members
// that passed.
type groupAttempt struct {
	s            *Store
	p            Player
	docs         map[string]*firestorepb.Document
	st           save.State // after the members applied so far
	migrated     save.State // as read, migrated to the current schema
	schemaBefore int
	version      int64
	now          time.Time
	ledger       []*firestorepb.Write
	ledgerBytes  int
	full         bool              // a member did not fit: it and the rest wait
	onceDone     map[string]string // once-only things done in this group, by entry
}

// apply applies one member on the attempt's state. The attempt takes the
// member's writes and new state only once every check has passed, so a
// member that fails, even by panicking, leaves the attempt as it was.
func (g *groupAttempt) apply(pm *pendingMutation) (r groupResult) {
	s, userID := g.s, g.p.UserID
	defer func() {
		if v := recover(); v != nil {
			r = groupResult{err: fmt.Errorf("store: applying mutation %s of player %d panicked: %v\n%s", pm.entryID, userID, v, debug.Stack())}
		}
	}()
	if pm.req.Once != "" {
		if by := onceEntry(g.docs[s.docName(oncePath(userID, pm.req.Once))], g.onceDone[pm.req.Once]); by != "" {
			return groupResult{err: save.Errorf(save.CodeAlreadyApplied, "%s was already done for this player, by ledger entry %s", pm.req.Once, by).
				WithDetail("once", pm.req.Once).WithDetail("entryId", by)}
		}
	}
	if s.beforeApply != nil {
		s.beforeApply(&pm.req)
	}
	applied, err := s.cfg.Apply(g.st, g.version, pm.req.Mutation, pm.req.Actor)
	if err != nil {
		return groupResult{err: s.explain(err, userID, g.version, g.st)}
	}
	if len(applied.Changes) == 0 && pm.req.Once == "" && len(pm.req.Settles) == 0 {
		// Nothing would change, so nothing is written: the version stays
		// the number of ledger entries, and no listener is woken for
		// nothing. (A once-only mutation still records that it was done.)
		return g.unchanged(pm)
	}
	out := Outcome{
		UserID:        userID,
		EntryID:       pm.entryID,
		VersionBefore: g.version,
		Version:       g.version + 1,
		SchemaVersion: s.cfg.SchemaVersion,
		CommittedAt:   g.now,
		ChangedPaths:  nonNil(applied.ChangedPaths),
		Changes:       applied.Changes,
	}
	if out.Changes == nil {
		out.Changes = []save.Change{}
	}
	if len(g.ledger) == 0 && g.schemaBefore != s.cfg.SchemaVersion {
		// The first entry after a migration records what the migration
		// changed, leaf by leaf, so the ledger still explains every value
		// and time travel can walk back into the older schema.
		migration := []save.Change{{Path: "schemaVersion", Old: int64(g.schemaBefore), New: int64(s.cfg.SchemaVersion)}}
		migration = append(migration, save.DiffTrees(g.p.Raw, g.migrated.Encode())...)
		out.Changes = append(migration, out.Changes...)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return groupResult{err: fmt.Errorf("store: encoding the outcome of %s: %w", pm.entryID, err)}
	}
	w, err := s.ledgerWrite(g.p, pm, out, body, g.schemaBefore)
	if err != nil {
		return groupResult{err: fmt.Errorf("store: encoding ledger entry %s: %w", pm.entryID, err)}
	}
	writes := []*firestorepb.Write{w}
	done := make(map[string]string)
	if pm.req.Once != "" {
		writes = append(writes, s.onceWrite(userID, pm.req.Once, out))
		done[pm.req.Once] = out.EntryID
	}
	for _, once := range pm.req.Settles {
		if done[once] == "" && onceEntry(g.docs[s.docName(oncePath(userID, once))], g.onceDone[once]) == "" {
			writes = append(writes, s.onceWrite(userID, once, out))
			done[once] = out.EntryID
		}
	}
	size, err := checkWrites(writes)
	if err != nil {
		return groupResult{err: err}
	}
	if len(g.ledger) > 0 && g.ledgerBytes+size > maxGroupLedgerBytes {
		g.full = true
		return groupResult{err: errDeferred}
	}
	g.ledger = append(g.ledger, writes...)
	g.ledgerBytes += size
	for once, entry := range done {
		g.onceDone[once] = entry
	}
	g.st = applied.State
	g.version++
	return groupResult{res: MutationResult{Outcome: out, Body: body}}
}

// unchanged answers a member that would change nothing with the current
// version, without writing.
func (g *groupAttempt) unchanged(pm *pendingMutation) groupResult {
	out := Outcome{
		UserID:        g.p.UserID,
		VersionBefore: g.version,
		Version:       g.version,
		SchemaVersion: g.s.cfg.SchemaVersion,
		CommittedAt:   g.now,
		ChangedPaths:  []string{},
		Changes:       []save.Change{},
		Unchanged:     true,
	}
	body, err := json.Marshal(out)
	if err != nil {
		return groupResult{err: fmt.Errorf("store: encoding the outcome of %s: %w", pm.entryID, err)}
	}
	return groupResult{res: MutationResult{Outcome: out, Body: body}}
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
func (s *Store) onceWrite(userID int64, once string, out Outcome) *firestorepb.Write {
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

// onceEntry is the ledger entry that already did a once-only mutation:
// from its record, or from earlier in the same group; "" when none did.
func onceEntry(record *firestorepb.Document, inGroup string) string {
	if record != nil {
		return fieldString(record.GetFields(), "entryId")
	}
	return inGroup
}

// explain adds what a caller needs to recover from a rejected mutation: a
// version conflict carries the current version and save, so the caller can
// rebase without another round trip.
func (s *Store) explain(err error, userID, version int64, st save.State) error {
	e, ok := save.AsError(err)
	if !ok || e.Code != save.CodeVersionConflict {
		return err
	}
	return e.WithDetail("userId", userID).WithDetail("currentVersion", version).WithDetail("save", st.View())
}

// replay answers a mutation whose ledger entry already exists.
func replay(pm *pendingMutation, entry ledgerDoc) groupResult {
	if entry.RequestHash != pm.hash {
		return groupResult{err: save.Errorf(save.CodeIdempotencyKeyReused,
			"this Idempotency-Key was already used for a different request; use a new key for a new mutation").
			WithDetail("entryId", pm.entryID).WithDetail("committedVersion", entry.Version)}
	}
	body := []byte(entry.Response)
	var out Outcome
	if err := json.Unmarshal(body, &out); err != nil {
		return groupResult{err: err}
	}
	return groupResult{res: MutationResult{Outcome: out, Body: body, Replayed: true}}
}

// replayInGroup answers a duplicate of a mutation committed in the same group.
func replayInGroup(pm, first *pendingMutation, firstResult groupResult) groupResult {
	if pm.hash != first.hash {
		return groupResult{err: save.Errorf(save.CodeIdempotencyKeyReused,
			"this Idempotency-Key was already used for a different request; use a new key for a new mutation").
			WithDetail("entryId", pm.entryID)}
	}
	r := firstResult
	r.res.Replayed = true
	return r
}

// playerWrite writes the save and version after a group, creating the
// player document on its first mutation.
func (s *Store) playerWrite(p Player, st save.State, version int64, now time.Time) (*firestorepb.Write, error) {
	saveValue, err := encodeValue(st.Encode())
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
func (s *Store) ledgerWrite(p Player, pm *pendingMutation, out Outcome, body []byte, schemaBefore int) (*firestorepb.Write, error) {
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
