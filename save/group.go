package save

import (
	"fmt"
	"runtime/debug"
	"slices"
	"time"
	"unicode/utf8"
)

// Request is one caller's mutation of one player as the domain judges it:
// who asks, what, and the once-only things it does.
type Request struct {
	// EntryID names the ledger entry the request makes when it commits. It
	// derives from the caller's scope and idempotency key, so requests with
	// one EntryID are one request sent again.
	EntryID string
	// Hash identifies the request's content, so that a request sent again
	// can be told from another request under the same key.
	Hash     string
	Actor    Actor
	Mutation Mutation
	// Once, when set, names something the request may do only once for
	// the player, whoever asks and under whatever key (the refund of one
	// purchase): once it is done, ApplyGroup refuses it with ALREADY_APPLIED.
	Once string
	// Settles names once-only things the request makes moot without doing
	// them (a restore to before a purchase settles its refund): its entry
	// records them as done unless they already are.
	Settles []string
}

// CheckRequest validates a request without looking at any state: the
// actor's id and the once-only names are stored, so they must be valid
// UTF-8, and the mutation must pass CheckMutation for the actor's kind. A
// request refused here commits nothing and stores nothing; ApplyGroup
// relies on the check and does not repeat it.
// Errors: those of CheckMutation; INVALID_ARGUMENT naming the field whose
// text is not valid UTF-8.
func (c *Config) CheckRequest(r Request) error {
	fields := []struct{ name, value string }{{"actor.id", r.Actor.ID}, {"once", r.Once}}
	for i, once := range r.Settles {
		fields = append(fields, struct{ name, value string }{fmt.Sprintf("settles[%d]", i), once})
	}
	for _, f := range fields {
		if !utf8.ValidString(f.value) {
			return Errorf(CodeInvalidArgument, "%s: must be valid UTF-8", f.name).WithDetail("field", f.name)
		}
	}
	return c.CheckMutation(r.Mutation, r.Actor.Kind)
}

// Recorded is a request that committed before: what its ledger entry
// holds of it.
type Recorded struct {
	Hash    string
	Version int64
}

// Group is a player's save as read at the start of one commit, what is
// already recorded for the group's requests, and the requests, to be
// applied in order.
type Group struct {
	UserID int64
	// Save is the save as stored, at schema Schema; nil when the player
	// has none yet (the group starts from the config's starting save).
	Save   map[string]any
	Schema int
	// Version is the save's version: the number of mutations committed.
	Version int64
	// Now is the commit time the outcomes carry.
	Now time.Time
	// Recorded holds the requests already committed, by EntryID.
	Recorded map[string]Recorded
	// Done holds the once-only things already done for the player, each
	// with the entry that did it.
	Done     map[string]string
	Requests []Request
}

// GroupResult is what applying a group did.
type GroupResult struct {
	// Save is the new save encoded for storage, and Version its version.
	// When no answer commits, Save is nil and Version the group's.
	Save    map[string]any
	Version int64
	// Answers are the requests' answers, in the requests' order.
	Answers []Answer
}

// Answer is one request's answer within a group.
type Answer struct {
	// Err refuses the request: nothing of it commits.
	Err error
	// Outcome is the answer of a request that commits, or that would
	// change nothing (Outcome.Unchanged).
	Outcome Outcome
	// Replay says where the answer comes from when the request was sent
	// before; ReplayOf is then, for ReplayInGroup, the index of the
	// request whose answer it is.
	Replay   Replay
	ReplayOf int
	// Records are the once-only things the request's entry records as done.
	Records []string
}

// Replay says where the answer of a request sent again comes from.
type Replay int

const (
	// NotReplayed is a request answered on its own.
	NotReplayed Replay = iota
	// ReplayRecorded is a request answered with the answer stored in its
	// ledger entry (Group.Recorded).
	ReplayRecorded
	// ReplayInGroup is a request answered with the answer of an earlier
	// request of the same group (Answer.ReplayOf).
	ReplayInGroup
)

// Commits reports whether the answer makes a ledger entry.
func (a Answer) Commits() bool {
	return a.Err == nil && a.Replay == NotReplayed && !a.Outcome.Unchanged
}

// ApplyGroup answers a group's requests in order, each on the save the
// commits before it left. A request already recorded is replayed, and so
// is one sent again within the group; under its EntryID with another Hash
// it is IDEMPOTENCY_KEY_REUSED. A once-only request already done is
// ALREADY_APPLIED. A mutation that would change nothing answers Unchanged
// and commits nothing (unless it does or settles something once-only).
// Any other request commits as the next version. A request that fails,
// even by panicking, fails alone and leaves the save as it was.
//
// The first commit after a migration also records what the migration
// changed, leaf by leaf, so the ledger explains every value and time
// travel can walk back into the older schema. Replays need no state: a
// group of replays does not load the save.
//
// The requests must have passed CheckRequest. Errors of the group as a
// whole: SAVE_MIGRATION_FAILED, SCHEMA_TOO_NEW when the stored save cannot
// be loaded. Errors of an answer: those of Apply (a VERSION_CONFLICT
// carries the player, the current version and the save in its details, so
// the caller can rebase without another read), IDEMPOTENCY_KEY_REUSED,
// ALREADY_APPLIED.
func (c *Config) ApplyGroup(g Group) (GroupResult, error) {
	out := GroupResult{Version: g.Version, Answers: make([]Answer, len(g.Requests))}
	fresh := make([]int, 0, len(g.Requests))
	for i, r := range g.Requests {
		rec, ok := g.Recorded[r.EntryID]
		switch {
		case !ok:
			fresh = append(fresh, i)
		case rec.Hash != r.Hash:
			out.Answers[i].Err = keyReused(r.EntryID).WithDetail("committedVersion", rec.Version)
		default:
			out.Answers[i].Replay = ReplayRecorded
		}
	}
	if len(fresh) == 0 {
		return out, nil
	}
	var st State
	if g.Save == nil {
		st = c.NewState()
	} else {
		var err error
		if st, err = c.LoadState(g.Save, g.Schema); err != nil {
			return GroupResult{}, err
		}
	}
	run := &groupRun{c: c, g: g, st: st, migrated: st, version: g.Version,
		committed: make(map[string]int), doneHere: make(map[string]string)}
	for _, i := range fresh {
		out.Answers[i] = run.answer(i, g.Requests[i])
	}
	if run.commits > 0 {
		out.Save, out.Version = run.st.Encode(), run.version
	}
	return out, nil
}

// groupRun is what one ApplyGroup carries from one request to the next.
type groupRun struct {
	c        *Config
	g        Group
	st       State // after the commits so far
	migrated State // as read, migrated to the current schema
	version  int64
	commits  int
	// committed holds the requests committed so far, by EntryID, and
	// doneHere the once-only things they did.
	committed map[string]int
	doneHere  map[string]string
}

// answer answers request i. The run takes the request's new state only
// once every check has passed.
func (run *groupRun) answer(i int, r Request) (a Answer) {
	c, g := run.c, run.g
	if j, dup := run.committed[r.EntryID]; dup {
		if r.Hash != g.Requests[j].Hash {
			return Answer{Err: keyReused(r.EntryID)}
		}
		return Answer{Replay: ReplayInGroup, ReplayOf: j}
	}
	if r.Once != "" {
		if by := run.doneBy(r.Once); by != "" {
			return Answer{Err: Errorf(CodeAlreadyApplied, "%s was already done for this player, by ledger entry %s", r.Once, by).
				WithDetail("once", r.Once).WithDetail("entryId", by)}
		}
	}
	defer func() {
		if v := recover(); v != nil {
			a = Answer{Err: fmt.Errorf("save: applying mutation %s of player %d panicked: %v\n%s", r.EntryID, g.UserID, v, debug.Stack())}
		}
	}()
	applied, err := c.applyChecked(run.st, run.version, r.Mutation, r.Actor)
	if err != nil {
		return Answer{Err: run.explain(err)}
	}
	if len(applied.Changes) == 0 && r.Once == "" && len(r.Settles) == 0 {
		// Nothing would change, so nothing is written: the version stays
		// the number of ledger entries. (A once-only mutation still
		// records that it was done.)
		return Answer{Outcome: Outcome{
			UserID:        g.UserID,
			VersionBefore: run.version,
			Version:       run.version,
			SchemaVersion: c.SchemaVersion,
			CommittedAt:   g.Now,
			ChangedPaths:  []string{},
			Changes:       []Change{},
			Unchanged:     true,
		}}
	}
	out := Outcome{
		UserID:        g.UserID,
		EntryID:       r.EntryID,
		VersionBefore: run.version,
		Version:       run.version + 1,
		SchemaVersion: c.SchemaVersion,
		CommittedAt:   g.Now,
		ChangedPaths:  applied.ChangedPaths,
		Changes:       applied.Changes,
	}
	if out.ChangedPaths == nil {
		out.ChangedPaths = []string{}
	}
	if out.Changes == nil {
		out.Changes = []Change{}
	}
	if run.commits == 0 && g.Schema != c.SchemaVersion {
		migration := []Change{{Path: "schemaVersion", Old: int64(g.Schema), New: int64(c.SchemaVersion)}}
		migration = append(migration, DiffTrees(g.Save, run.migrated.Encode())...)
		out.Changes = append(migration, out.Changes...)
	}
	var records []string
	if r.Once != "" {
		records = append(records, r.Once)
	}
	for _, once := range r.Settles {
		if !slices.Contains(records, once) && run.doneBy(once) == "" {
			records = append(records, once)
		}
	}
	run.st = applied.State
	run.version++
	run.commits++
	run.committed[r.EntryID] = i
	for _, once := range records {
		run.doneHere[once] = r.EntryID
	}
	return Answer{Outcome: out, Records: records}
}

// doneBy is the entry that did a once-only thing, before the group or in
// it; "" when none did.
func (run *groupRun) doneBy(once string) string {
	if by := run.g.Done[once]; by != "" {
		return by
	}
	return run.doneHere[once]
}

// explain adds what a caller needs to recover from a rejected mutation: a
// version conflict carries the current version and save, so the caller can
// rebase without another round trip.
func (run *groupRun) explain(err error) error {
	e, ok := AsError(err)
	if !ok || e.Code != CodeVersionConflict {
		return err
	}
	return e.WithDetail("userId", run.g.UserID).WithDetail("currentVersion", run.version).WithDetail("save", run.st.View())
}

// keyReused refuses a request under the EntryID of another one.
func keyReused(entryID string) *Error {
	return Errorf(CodeIdempotencyKeyReused,
		"this Idempotency-Key was already used for a different request; use a new key for a new mutation").
		WithDetail("entryId", entryID)
}
