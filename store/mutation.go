package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/savesync/savesync/save"
)

// MutationRequest is one caller's mutation of one player.
type MutationRequest struct {
	UserID         int64
	Actor          save.Actor
	JobID          string // the game server's job id, when the caller is one
	IdempotencyKey string
	Mutation       save.Mutation
	// Kind is what the ledger entry says wrote it: LedgerKindMutation
	// when empty, LedgerKindCompensation, LedgerKindRefund or
	// LedgerKindRestore for support's fixes, LedgerKindBulk for a bulk job.
	Kind string
	// BulkJobID names the bulk job making the change, recorded on the
	// ledger entry.
	BulkJobID string
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
		pm.span = trace.SpanContextFromContext(ctx)
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
	// span is the caller's span (invalid when untraced): the group's
	// commit joins its trace.
	span trace.SpanContext
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
