package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/internal/sleep"
	"github.com/savesync/savesync/save"
)

// States of a bulk job.
const (
	// BulkDraft is a job created (and previewed) but not started.
	BulkDraft = "draft"
	// BulkRunning is a job the runner works through.
	BulkRunning = "running"
	// BulkPaused is a started job held by an administrator; resume goes on
	// from its cursor.
	BulkPaused = "paused"
	// BulkCancelled is a job stopped for good; what it did stays done.
	BulkCancelled = "cancelled"
	// BulkDone is a job that went through its whole selection.
	BulkDone = "done"
)

// Outcomes of one player in a bulk job.
const (
	// BulkChanged: the player's mutation committed (once).
	BulkChanged = "done"
	// BulkFailed: the mutation was refused (a floor, a cap, a migration);
	// nothing was written for the player.
	BulkFailed = "failed"
	// BulkSkipped: nothing to do (no save, ops that come to nothing, or a
	// save that already holds what the ops would set).
	BulkSkipped = "skipped"
)

// Bulk job limits and defaults.
const (
	// DefaultBulkRate is the players per second a job runs at unless it
	// says otherwise: well under what one instance commits, so live
	// mutations keep their latency.
	DefaultBulkRate = 100
	// MaxBulkRate bounds a job's rate.
	MaxBulkRate = 2000
	// maxBulkReason bounds a job's reason, in characters; the ledger
	// reason adds the job id and ticket.
	maxBulkReason = 800
	// bulkPreviewScan bounds the players a dry run evaluates.
	bulkPreviewScan = 1000
	// bulkSampleSize is how many players a preview shows before → after.
	bulkSampleSize = 10
	// bulkLedgerScan bounds the ledger entries one page of a ledger
	// selection reads.
	bulkLedgerScan = 500
	// maxGrantedEntries bounds the ledger entries read to add up one
	// player's "granted".
	maxGrantedEntries = 10000
	// maxBulkAttempts bounds the attempts at one player's mutation when
	// its save changed under it or the database was unavailable.
	maxBulkAttempts = 5
)

// BulkJobRequest asks to create (or preview) a bulk job.
type BulkJobRequest struct {
	Selection save.BulkSelection
	// Ops is the JSON array of the job's ops (see save.Config.DecodeBulkOps).
	Ops    json.RawMessage
	Reason string
	Ticket string
	// Rate is the players per second to run at (DefaultBulkRate when 0).
	Rate  int
	Actor save.Actor
	// IdempotencyKey names the job: the same key from the same actor
	// answers the job created first.
	IdempotencyKey string
}

// BulkJob is a bulk job as the admin API shows it.
type BulkJob struct {
	JobID     string             `json:"jobId"`
	State     string             `json:"state"`
	Selection save.BulkSelection `json:"selection"`
	Ops       json.RawMessage    `json:"ops"`
	Reason    string             `json:"reason"`
	Ticket    string             `json:"ticket"`
	Actor     save.Actor         `json:"actor"`
	// Rate is the configured players per second; MeasuredRate what the
	// runner achieved over its last page.
	Rate         int     `json:"rate"`
	MeasuredRate float64 `json:"measuredRate"`
	// Estimate is the dry run's count of matching players at creation;
	// EstimateExact whether it counted them all.
	Estimate      int64 `json:"estimate"`
	EstimateExact bool  `json:"estimateExact"`
	// Matched counts the players worked through so far: Done + Failed + Skipped.
	Matched int64 `json:"matched"`
	Done    int64 `json:"done"`
	Failed  int64 `json:"failed"`
	Skipped int64 `json:"skipped"`
	// Effect is what the committed changes added up to, by path.
	Effect     map[string]int64 `json:"effect"`
	CreatedAt  time.Time        `json:"createdAt"`
	UpdatedAt  time.Time        `json:"updatedAt"`
	StartedAt  *time.Time       `json:"startedAt,omitempty"`
	FinishedAt *time.Time       `json:"finishedAt,omitempty"`
}

// BulkPreview is a dry run: what a job would do, with nothing written.
type BulkPreview struct {
	// Matched is the number of players the selection matches; exact when
	// MatchedExact, else a lower bound from the players scanned.
	Matched      int64 `json:"matched"`
	MatchedExact bool  `json:"matchedExact"`
	// Scanned is the number of players evaluated (at most 1,000); Changed,
	// Failed and Skipped count their outcomes and Effect adds up their
	// changes by path; EffectComplete says whether every match was scanned.
	Scanned        int              `json:"scanned"`
	Changed        int              `json:"changed"`
	Failed         int              `json:"failed"`
	Skipped        int              `json:"skipped"`
	Effect         map[string]int64 `json:"effect"`
	EffectComplete bool             `json:"effectComplete"`
	// Sample shows the first players' before → after.
	Sample []BulkResult `json:"sample"`
}

// BulkResult is one player's outcome in a job (or in a preview).
type BulkResult struct {
	UserID  int64  `json:"userId"`
	Outcome string `json:"outcome"`
	// Code and Message say why a player failed or was skipped.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// EntryID and Version are the committed ledger entry and version.
	EntryID string        `json:"entryId,omitempty"`
	Version int64         `json:"version,omitempty"`
	Changes []save.Change `json:"changes"`
	At      time.Time     `json:"at"`
}

// BulkJobPage is one page of jobs, newest first.
type BulkJobPage struct {
	Jobs       []BulkJob `json:"jobs"`
	NextCursor string    `json:"nextCursor,omitempty"`
}

// bulkJobDoc is a job as stored, bulkJobs/{jobId}.
type bulkJobDoc struct {
	State         string           `firestore:"state"`
	Definition    string           `firestore:"definition"` // {selection, ops} as JSON
	Reason        string           `firestore:"reason"`
	Ticket        string           `firestore:"ticket"`
	ActorKind     string           `firestore:"actorKind"`
	ActorID       string           `firestore:"actorId"`
	Rate          int64            `firestore:"rate"`
	MeasuredRate  float64          `firestore:"measuredRate"`
	Estimate      int64            `firestore:"estimate"`
	EstimateExact bool             `firestore:"estimateExact"`
	Matched       int64            `firestore:"matched"`
	Done          int64            `firestore:"done"`
	Failed        int64            `firestore:"failed"`
	Skipped       int64            `firestore:"skipped"`
	Effect        map[string]int64 `firestore:"effect"`
	Cursor        string           `firestore:"cursor"`
	LeaseHolder   string           `firestore:"leaseHolder"`
	LeaseExpires  time.Time        `firestore:"leaseExpiresAt"`
	CreatedAt     time.Time        `firestore:"createdAt"`
	UpdatedAt     time.Time        `firestore:"updatedAt"`
	StartedAt     time.Time        `firestore:"startedAt"`
	FinishedAt    time.Time        `firestore:"finishedAt"`
}

// bulkDefinition is the stored part of a job that decides what it does.
type bulkDefinition struct {
	Selection save.BulkSelection `json:"selection"`
	Ops       json.RawMessage    `json:"ops"`
}

// bulkResultDoc is one player's outcome as stored, bulkJobs/{jobId}/results/{userId}.
type bulkResultDoc struct {
	UserID  int64     `firestore:"userId"`
	Outcome string    `firestore:"outcome"`
	Code    string    `firestore:"code"`
	Message string    `firestore:"message"`
	EntryID string    `firestore:"entryId"`
	Version int64     `firestore:"version"`
	Changes string    `firestore:"changes"` // []save.Change as JSON
	At      time.Time `firestore:"at"`
}

// bulkJob is a job loaded for work: the document and its decoded definition.
type bulkJob struct {
	id  string
	doc bulkJobDoc
	sel save.BulkSelection
	ops []save.BulkOp
	raw json.RawMessage
}

// actor is the administrator the job acts as.
func (j *bulkJob) actor() save.Actor {
	return save.Actor{Kind: save.ActorKind(j.doc.ActorKind), ID: j.doc.ActorID}
}

// ledgerReason is the reason on every ledger entry the job writes.
func (j *bulkJob) ledgerReason() string {
	return fmt.Sprintf("bulk job %s: %s [ticket %s]", j.id, j.doc.Reason, j.doc.Ticket)
}

// bulkJobID derives a job's id from its creator and Idempotency-Key.
func bulkJobID(actor save.Actor, key string) string {
	return "bj" + EntryID(actor, "bulk-job\x00"+key)[:22]
}

// CreateBulkJob validates a job, previews it and, unless dryRun, stores it
// as a draft. A second request under the same actor and key answers the
// job created first (replayed true) when it asks for the same job.
// Errors: INVALID_ARGUMENT (selection, ops, expressions, reason, ticket,
// rate, key), PERMISSION_DENIED (an op a bulk job may not use),
// LIMIT_EXCEEDED (too many ids), IDEMPOTENCY_KEY_REUSED.
func (s *Store) CreateBulkJob(ctx context.Context, req BulkJobRequest, dryRun bool) (_ BulkJob, _ BulkPreview, replayed bool, err error) {
	defer wrapOp(&err, "store.CreateBulkJob")
	job, err := s.newBulkJob(req, dryRun)
	if err != nil {
		return BulkJob{}, BulkPreview{}, false, err
	}
	preview, err := s.previewBulk(ctx, job)
	if err != nil {
		return BulkJob{}, BulkPreview{}, false, err
	}
	if dryRun {
		return job.view(), preview, false, nil
	}
	job.doc.Estimate, job.doc.EstimateExact = preview.Matched, preview.MatchedExact
	ref := s.fs.Collection(bulkJobsCollection).Doc(job.id)
	_, err = ref.Create(ctx, job.doc)
	if status.Code(err) == codes.AlreadyExists {
		first, gerr := s.loadBulkJob(ctx, job.id)
		if gerr != nil {
			return BulkJob{}, BulkPreview{}, false, gerr
		}
		if first.doc.Definition != job.doc.Definition || first.doc.Reason != job.doc.Reason || first.doc.Ticket != job.doc.Ticket {
			return BulkJob{}, BulkPreview{}, false, save.Errorf(save.CodeIdempotencyKeyReused, "this Idempotency-Key already created bulk job %s with another definition; use a new key for a new job", job.id).WithDetail("jobId", job.id)
		}
		return first.view(), preview, true, nil
	}
	if err != nil {
		return BulkJob{}, BulkPreview{}, false, err
	}
	return job.view(), preview, false, nil
}

// newBulkJob checks a request and builds the job it asks for.
func (s *Store) newBulkJob(req BulkJobRequest, dryRun bool) (*bulkJob, error) {
	if !dryRun {
		if err := CheckIdempotencyKey(req.IdempotencyKey); err != nil {
			return nil, err
		}
	}
	if req.Actor.Kind != save.ActorAdmin || req.Actor.ID == "" {
		return nil, save.Errorf(save.CodePermissionDenied, "bulk jobs run as an administrator")
	}
	reason := strings.TrimSpace(req.Reason)
	if len([]rune(reason)) > maxBulkReason {
		return nil, save.Errorf(save.CodeInvalidArgument, "reason: at most %d characters", maxBulkReason).WithDetail("field", "reason")
	}
	switch {
	case req.Rate == 0:
		req.Rate = DefaultBulkRate
	case req.Rate < 1 || req.Rate > MaxBulkRate:
		return nil, save.Errorf(save.CodeInvalidArgument, "rate: players per second between 1 and %d, got %d", MaxBulkRate, req.Rate).WithDetail("field", "rate")
	}
	if err := s.cfg.CheckBulkSelection(req.Selection); err != nil {
		return nil, err
	}
	if len(req.Ops) == 0 {
		return nil, save.Errorf(save.CodeInvalidArgument, "ops: required, the ops to apply to each player").WithDetail("field", "ops")
	}
	ops, err := s.cfg.DecodeBulkOps(req.Ops)
	if err != nil {
		return nil, err
	}
	if save.UsesGranted(ops) && req.Selection.Kind != save.SelectLedger {
		return nil, save.Errorf(save.CodeInvalidArgument, "ops: granted is defined only for a ledger selection (what the selected entries carried)").WithDetail("field", "ops")
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	sel := req.Selection
	if sel.Kind == save.SelectLedger && sel.To.IsZero() {
		sel.To = now
	}
	sel.From, sel.To = sel.From.UTC(), sel.To.UTC()
	raw, err := save.EncodeBulkOps(ops)
	if err != nil {
		return nil, fmt.Errorf("encode the ops: %w", err)
	}
	def, err := json.Marshal(bulkDefinition{Selection: sel, Ops: raw})
	if err != nil {
		return nil, fmt.Errorf("encode the definition: %w", err)
	}
	id := "dry-run"
	if !dryRun {
		id = bulkJobID(req.Actor, req.IdempotencyKey)
	}
	return &bulkJob{
		id:  id,
		sel: sel,
		ops: ops,
		raw: raw,
		doc: bulkJobDoc{
			State:      BulkDraft,
			Definition: string(def),
			Reason:     reason,
			Ticket:     strings.TrimSpace(req.Ticket),
			ActorKind:  string(req.Actor.Kind),
			ActorID:    req.Actor.ID,
			Rate:       int64(req.Rate),
			Effect:     map[string]int64{},
			CreatedAt:  now,
			UpdatedAt:  now,
		},
	}, nil
}

// view is the job as the admin API shows it.
func (j *bulkJob) view() BulkJob {
	v := BulkJob{
		JobID: j.id, State: j.doc.State, Selection: j.sel, Ops: j.raw, Reason: j.doc.Reason, Ticket: j.doc.Ticket,
		Actor: j.actor(), Rate: int(j.doc.Rate), MeasuredRate: j.doc.MeasuredRate,
		Estimate: j.doc.Estimate, EstimateExact: j.doc.EstimateExact,
		Matched: j.doc.Matched, Done: j.doc.Done, Failed: j.doc.Failed, Skipped: j.doc.Skipped,
		Effect: j.doc.Effect, CreatedAt: j.doc.CreatedAt.UTC(), UpdatedAt: j.doc.UpdatedAt.UTC(),
	}
	if v.Effect == nil {
		v.Effect = map[string]int64{}
	}
	if t := j.doc.StartedAt; !t.IsZero() && t.After(minFirestoreTime) {
		t = t.UTC()
		v.StartedAt = &t
	}
	if t := j.doc.FinishedAt; !t.IsZero() && t.After(minFirestoreTime) {
		t = t.UTC()
		v.FinishedAt = &t
	}
	return v
}

// loadBulkJob reads a job and decodes its definition.
// Errors: NOT_FOUND.
func (s *Store) loadBulkJob(ctx context.Context, jobID string) (*bulkJob, error) {
	if !validBulkJobID(jobID) {
		return nil, save.Errorf(save.CodeNotFound, "no bulk job %q", jobID).WithDetail("jobId", jobID)
	}
	snap, err := s.fs.Collection(bulkJobsCollection).Doc(jobID).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, save.Errorf(save.CodeNotFound, "no bulk job %q", jobID).WithDetail("jobId", jobID)
	}
	if err != nil {
		return nil, err
	}
	return s.bulkJobOf(snap)
}

// bulkJobInTxn reads and decodes a job's document in tx.
func (s *Store) bulkJobInTxn(tx *firestore.Transaction, ref *firestore.DocumentRef) (*bulkJob, error) {
	snap, err := tx.Get(ref)
	if err != nil {
		return nil, err
	}
	return s.bulkJobOf(snap)
}

// bulkJobOf decodes a job's document.
func (s *Store) bulkJobOf(snap *firestore.DocumentSnapshot) (*bulkJob, error) {
	j := &bulkJob{id: snap.Ref.ID}
	if err := snap.DataTo(&j.doc); err != nil {
		return nil, fmt.Errorf("bulk job %s does not decode: %w", j.id, err)
	}
	var def bulkDefinition
	if err := json.Unmarshal([]byte(j.doc.Definition), &def); err != nil {
		return nil, fmt.Errorf("bulk job %s has no readable definition: %w", j.id, err)
	}
	ops, err := s.cfg.DecodeBulkOps(def.Ops)
	if err != nil {
		return nil, fmt.Errorf("bulk job %s: its ops no longer fit the game config: %w", j.id, err)
	}
	j.sel, j.ops, j.raw = def.Selection, ops, def.Ops
	return j, nil
}

// validBulkJobID reports whether id can be a job id this store issued.
func validBulkJobID(id string) bool {
	if len(id) != 24 || !strings.HasPrefix(id, "bj") {
		return false
	}
	for _, r := range id[2:] {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// GetBulkJob reads a job's definition and progress.
// Errors: NOT_FOUND.
func (s *Store) GetBulkJob(ctx context.Context, jobID string) (_ BulkJob, err error) {
	defer wrapOp(&err, "store.GetBulkJob(%s)", jobID)
	j, err := s.loadBulkJob(ctx, jobID)
	if err != nil {
		return BulkJob{}, err
	}
	return j.view(), nil
}

// bulkListCursor is the position after the last job a page returned.
type bulkListCursor struct {
	At int64  `json:"t"` // createdAt, Unix microseconds
	ID string `json:"id"`
}

// ListBulkJobs lists jobs newest first, limit (1 to 100, 20 when 0) a page.
// Errors: INVALID_ARGUMENT (limit, cursor).
func (s *Store) ListBulkJobs(ctx context.Context, cursor string, limit int) (_ BulkJobPage, err error) {
	defer wrapOp(&err, "store.ListBulkJobs")
	switch {
	case limit == 0:
		limit = 20
	case limit < 1 || limit > 100:
		return BulkJobPage{}, save.Errorf(save.CodeInvalidArgument, "limit must be between 1 and 100, got %d", limit).WithDetail("field", "limit")
	}
	q := s.fs.Collection(bulkJobsCollection).OrderBy("createdAt", firestore.Desc).OrderBy(firestore.DocumentID, firestore.Desc)
	if cursor != "" {
		var c bulkListCursor
		bad := save.Errorf(save.CodeInvalidArgument, "cursor: not a cursor this service issued; start again without it").WithDetail("field", "cursor")
		if err := decodeCursor(cursor, &c, bad); err != nil {
			return BulkJobPage{}, err
		}
		if !inFirestoreRange(time.UnixMicro(c.At)) || !validBulkJobID(c.ID) {
			return BulkJobPage{}, bad
		}
		q = q.StartAfter(time.UnixMicro(c.At).UTC(), c.ID)
	}
	docs, err := q.Limit(limit + 1).Documents(ctx).GetAll()
	if err != nil {
		return BulkJobPage{}, err
	}
	page := BulkJobPage{Jobs: []BulkJob{}}
	for i, d := range docs {
		if i == limit {
			last := page.Jobs[len(page.Jobs)-1]
			page.NextCursor = encodeCursor(bulkListCursor{At: last.CreatedAt.UnixMicro(), ID: last.JobID})
			break
		}
		j, err := s.bulkJobOf(d)
		if err != nil {
			return BulkJobPage{}, err
		}
		page.Jobs = append(page.Jobs, j.view())
	}
	return page, nil
}

// Actions on a bulk job's state.
const (
	// BulkStart starts a draft.
	BulkStart = "start"
	// BulkPause holds a running job.
	BulkPause = "pause"
	// BulkResume goes on with a paused job.
	BulkResume = "resume"
	// BulkCancel stops a job for good.
	BulkCancel = "cancel"
)

// bulkTransitions maps an action to the states it may start from and the
// state it leads to.
var bulkTransitions = map[string]struct {
	from []string
	to   string
}{
	BulkStart:  {[]string{BulkDraft}, BulkRunning},
	BulkPause:  {[]string{BulkRunning}, BulkPaused},
	BulkResume: {[]string{BulkPaused}, BulkRunning},
	BulkCancel: {[]string{BulkDraft, BulkRunning, BulkPaused}, BulkCancelled},
}

// ChangeBulkJob starts, pauses, resumes or cancels a job. Starting checks
// that the selection matches someone. A pause or cancel takes effect at
// the runner's next page (at most a page of players later); what was done
// stays done.
// Errors: NOT_FOUND, INVALID_ARGUMENT (unknown action), FAILED_PRECONDITION
// (the job's state does not allow it, e.g. a second start; details.state),
// SELECTION_EMPTY (start of a job whose selection matches no player).
func (s *Store) ChangeBulkJob(ctx context.Context, jobID, action string) (_ BulkJob, err error) {
	defer wrapOp(&err, "store.ChangeBulkJob(%s, %s)", jobID, action)
	tr, ok := bulkTransitions[action]
	if !ok {
		return BulkJob{}, save.Errorf(save.CodeInvalidArgument, "action must be start, pause, resume or cancel, got %q", action)
	}
	j, err := s.loadBulkJob(ctx, jobID)
	if err != nil {
		return BulkJob{}, err
	}
	if err := checkTransition(j.doc.State, action, tr.from); err != nil {
		return BulkJob{}, err
	}
	if action == BulkStart {
		page, err := s.selectPage(ctx, j, "", 1)
		if err != nil {
			return BulkJob{}, err
		}
		if len(page.ids) == 0 && page.next == "" {
			return BulkJob{}, save.Errorf(save.CodeSelectionEmpty, "the selection of bulk job %s matches no player now; change the selection and create a new job", jobID).WithDetail("jobId", jobID)
		}
	}
	ref := s.fs.Collection(bulkJobsCollection).Doc(jobID)
	err = s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		cur, err := s.bulkJobInTxn(tx, ref)
		if err != nil {
			return err
		}
		if err := checkTransition(cur.doc.State, action, tr.from); err != nil {
			return err
		}
		now := s.now().UTC()
		cur.doc.State, cur.doc.UpdatedAt = tr.to, now
		if action == BulkStart {
			cur.doc.StartedAt = now
		}
		if action == BulkCancel {
			cur.doc.FinishedAt = now
		}
		j = cur
		return tx.Set(ref, cur.doc)
	})
	if err != nil {
		return BulkJob{}, err
	}
	return j.view(), nil
}

// checkTransition refuses an action the job's state does not allow.
func checkTransition(state, action string, from []string) error {
	for _, f := range from {
		if f == state {
			return nil
		}
	}
	return save.Errorf(save.CodeFailedPrecondition, "the bulk job is %s; %s needs a job that is %s", state, action, strings.Join(from, " or ")).
		WithDetail("state", state).WithDetail("action", action)
}

// BulkResults streams a job's per-player outcomes in user-id order to
// yield, page by page; yield returning an error stops it.
// Errors: NOT_FOUND.
func (s *Store) BulkResults(ctx context.Context, jobID string, yield func(BulkResult) error) (err error) {
	defer wrapOp(&err, "store.BulkResults(%s)", jobID)
	if _, err := s.loadBulkJob(ctx, jobID); err != nil {
		return err
	}
	q := s.fs.Collection(bulkJobsCollection).Doc(jobID).Collection(bulkResultsCollection).OrderBy(firestore.DocumentID, firestore.Asc).Limit(500)
	var after *firestore.DocumentSnapshot
	for {
		page := q
		if after != nil {
			page = q.StartAfter(after)
		}
		docs, err := page.Documents(ctx).GetAll()
		if err != nil {
			return err
		}
		for _, d := range docs {
			r, err := bulkResultOf(d)
			if err != nil {
				return err
			}
			if err := yield(r); err != nil {
				return err
			}
		}
		if len(docs) < 500 {
			return nil
		}
		after = docs[len(docs)-1]
	}
}

// bulkResultOf decodes a result document.
func bulkResultOf(d *firestore.DocumentSnapshot) (BulkResult, error) {
	var doc bulkResultDoc
	if err := d.DataTo(&doc); err != nil {
		return BulkResult{}, err
	}
	r := BulkResult{UserID: doc.UserID, Outcome: doc.Outcome, Code: doc.Code, Message: doc.Message, EntryID: doc.EntryID, Version: doc.Version, At: doc.At.UTC(), Changes: []save.Change{}}
	if doc.Changes != "" {
		_ = json.Unmarshal([]byte(doc.Changes), &r.Changes)
	}
	return r, nil
}

// previewBulk evaluates the job on the first players of its selection in
// memory and counts the matches.
func (s *Store) previewBulk(ctx context.Context, j *bulkJob) (BulkPreview, error) {
	p := BulkPreview{Effect: map[string]int64{}, Sample: []BulkResult{}}
	cursor := ""
	seen := make(map[int64]bool)
	for p.Scanned < bulkPreviewScan {
		page, err := s.selectPage(ctx, j, cursor, min(100, bulkPreviewScan-p.Scanned))
		if err != nil {
			return BulkPreview{}, err
		}
		var fresh []int64
		for _, id := range page.ids {
			if !seen[id] {
				seen[id] = true
				fresh = append(fresh, id)
			}
		}
		players, err := s.readPlayers(ctx, fresh)
		if err != nil {
			return BulkPreview{}, err
		}
		for _, pl := range players {
			r, err := s.planBulkPlayer(ctx, j, pl)
			if err != nil {
				return BulkPreview{}, err
			}
			p.Scanned++
			switch r.Outcome {
			case BulkChanged:
				p.Changed++
				save.Effect(p.Effect, r.Changes)
			case BulkFailed:
				p.Failed++
			default:
				p.Skipped++
			}
			if len(p.Sample) < bulkSampleSize {
				p.Sample = append(p.Sample, r)
			}
		}
		cursor = page.next
		if cursor == "" {
			break
		}
	}
	p.EffectComplete = cursor == ""
	p.Matched, p.MatchedExact = int64(len(seen)), cursor == ""
	if !p.MatchedExact {
		if n, ok, err := s.countSelection(ctx, j); err != nil {
			return BulkPreview{}, err
		} else if ok {
			p.Matched, p.MatchedExact = n, true
		}
	}
	return p, nil
}

// planBulkPlayer is what the job would do to one player, in memory.
func (s *Store) planBulkPlayer(ctx context.Context, j *bulkJob, p Player) (BulkResult, error) {
	r := BulkResult{UserID: p.UserID, Changes: []save.Change{}, At: s.now().UTC()}
	if !p.Exists {
		r.Outcome, r.Code, r.Message = BulkSkipped, string(save.CodeNotFound), "the player has no save"
		return r, nil
	}
	st, err := s.currentState(p)
	if err == nil && j.sel.Kind == save.SelectSave && !saveConditionHolds(s.cfg, j.sel, st) {
		r.Outcome, r.Message = BulkSkipped, "the save no longer matches the condition"
		return r, nil
	}
	var ops []save.Op
	if err == nil {
		ops, err = s.bulkOps(ctx, j, p.UserID, st)
	}
	if err == nil && len(ops) == 0 {
		r.Outcome, r.Message = BulkSkipped, "the ops come to nothing for this player"
		return r, nil
	}
	var applied save.Applied
	if err == nil {
		applied, err = s.cfg.Apply(st, p.Version, save.Mutation{Ops: ops, Reason: j.ledgerReason()}, j.actor())
	}
	if e, ok := save.AsError(err); ok {
		r.Outcome, r.Code, r.Message = BulkFailed, string(e.Code), e.Message
		return r, nil
	}
	if err != nil {
		return BulkResult{}, err
	}
	if len(applied.Changes) == 0 {
		r.Outcome, r.Message = BulkSkipped, "the save already holds what the ops would set"
		return r, nil
	}
	r.Outcome, r.Version, r.Changes = BulkChanged, p.Version+1, applied.Changes
	return r, nil
}

// saveConditionHolds checks a save condition on a save in memory (the
// query chose the player from the stored field; a live change may have
// moved it since).
func saveConditionHolds(cfg *save.Config, sel save.BulkSelection, st save.State) bool {
	v := cfg.Balance(st, sel.Field)
	switch sel.Cmp {
	case ">":
		return v > sel.Value
	case ">=":
		return v >= sel.Value
	case "<":
		return v < sel.Value
	case "<=":
		return v <= sel.Value
	}
	return v == sel.Value
}

// bulkOps are the job's ops for one player's save.
func (s *Store) bulkOps(ctx context.Context, j *bulkJob, userID int64, st save.State) ([]save.Op, error) {
	var granted int64
	if save.UsesGranted(j.ops) {
		var err error
		if granted, err = s.grantedTo(ctx, j.sel, userID); err != nil {
			return nil, err
		}
	}
	return s.cfg.PlanBulkOps(j.ops, st, granted)
}

// grantedTo adds up what a player's ledger entries matching a ledger
// selection carried in their matching ops.
func (s *Store) grantedTo(ctx context.Context, sel save.BulkSelection, userID int64) (int64, error) {
	q := s.fs.Collection(ledgerCollectionPath(userID)).Query
	if sel.ActorKind != "" {
		q = q.Where(ledgerActorKind, "==", string(sel.ActorKind))
		if sel.ActorID != "" {
			q = q.Where(ledgerActorID, "==", sel.ActorID)
		}
	}
	if !sel.From.IsZero() {
		q = q.Where(ledgerCommittedAt, ">=", sel.From)
	}
	q = q.Where(ledgerCommittedAt, "<", sel.To).OrderBy(ledgerCommittedAt, firestore.Desc).OrderBy(ledgerVersion, firestore.Desc).
		Select(ledgerOps).Limit(maxGrantedEntries + 1)
	it := q.Documents(ctx)
	defer it.Stop()
	var sum int64
	n := 0
	for {
		d, err := it.Next()
		if err == iterator.Done {
			return sum, nil
		}
		if err != nil {
			return 0, err
		}
		if n++; n > maxGrantedEntries {
			return 0, save.Errorf(save.CodeLimitExceeded, "player %d has more than %d selected ledger entries; narrow the time range", userID, maxGrantedEntries)
		}
		for _, op := range ledgerDocOf(d).Ops {
			if a, ok := sel.LedgerAmount(op); ok {
				if sum += a; sum < 0 && a > 0 {
					return 0, save.Errorf(save.CodeLimitExceeded, "the granted total of player %d overflows", userID)
				}
			}
		}
	}
}

// readPlayers reads players' documents in one batch, in the order given.
func (s *Store) readPlayers(ctx context.Context, ids []int64) ([]Player, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = s.fs.Doc(playerPath(id))
	}
	snaps, err := s.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, err
	}
	out := make([]Player, len(ids))
	for i, snap := range snaps {
		if !snap.Exists() {
			out[i] = s.decodePlayer(ids[i], nil)
			continue
		}
		if out[i], err = s.playerFromSnapshot(ids[i], snap); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// bulkCursor is a position in a selection.
type bulkCursor struct {
	ID    string `json:"id,omitempty"` // last player document id (all, save)
	Value int64  `json:"v,omitempty"`  // its field value (save)
	Index int    `json:"i,omitempty"`  // next index in the id list (ids)
	At    int64  `json:"t,omitempty"`  // last ledger entry's committedAt, Unix µs (ledger)
	Path  string `json:"p,omitempty"`  // and its document path
}

// selected is a page of a selection: the players in order, the cursor
// after each of them, and the cursor after the page ("" when the
// selection is exhausted).
type selected struct {
	ids   []int64
	after []string
	next  string
}

// add lists a player with the cursor just after it.
func (p *selected) add(id int64, after bulkCursor) {
	p.ids = append(p.ids, id)
	p.after = append(p.after, encodeCursor(after))
}

// selectPage reads the next players of a job's selection after cursor,
// at most limit, with Firestore doing the filtering and paging. A ledger
// selection may return fewer players (even none) and a next cursor, when
// the entries it read were of players already listed or of other ops.
func (s *Store) selectPage(ctx context.Context, j *bulkJob, cursor string, limit int) (selected, error) {
	var c bulkCursor
	if cursor != "" {
		if err := decodeCursor(cursor, &c, save.Errorf(save.CodeInternal, "bulk job %s has a cursor that does not decode", j.id)); err != nil {
			return selected{}, err
		}
	}
	sel := j.sel
	switch sel.Kind {
	case save.SelectIDs:
		var page selected
		end := min(c.Index+limit, len(sel.UserIDs))
		for i := c.Index; i < end; i++ {
			page.add(sel.UserIDs[i], bulkCursor{Index: i + 1})
		}
		if end < len(sel.UserIDs) {
			page.next = encodeCursor(bulkCursor{Index: end})
		}
		return page, nil
	case save.SelectAll, save.SelectSave:
		return s.selectPlayers(ctx, sel, c, limit)
	case save.SelectLedger:
		return s.selectLedger(ctx, sel, c, limit)
	}
	return selected{}, fmt.Errorf("bulk job %s: unknown selection %q", j.id, sel.Kind)
}

// saveFieldPath is the player document's field a save condition reads.
func saveFieldPath(field string) firestore.FieldPath {
	return append(firestore.FieldPath{"save"}, strings.SplitN(field, ".", 2)...)
}

// selectPlayers pages through the players collection, all of it or the
// players whose stored save matches the condition.
func (s *Store) selectPlayers(ctx context.Context, sel save.BulkSelection, c bulkCursor, limit int) (selected, error) {
	q := s.fs.Collection(playersCollection).Query
	path := saveFieldPath(sel.Field)
	ranged := sel.Kind == save.SelectSave && sel.Cmp != "=="
	switch {
	case sel.Kind == save.SelectAll:
		q = q.Select().OrderBy(firestore.DocumentID, firestore.Asc)
	case ranged:
		q = q.WherePath(path, sel.Cmp, sel.Value).SelectPaths(path).OrderByPath(path, firestore.Asc).OrderBy(firestore.DocumentID, firestore.Asc)
	default:
		q = q.WherePath(path, "==", sel.Value).Select().OrderBy(firestore.DocumentID, firestore.Asc)
	}
	if c.ID != "" {
		if ranged {
			q = q.StartAfter(c.Value, c.ID)
		} else {
			q = q.StartAfter(c.ID)
		}
	}
	docs, err := q.Limit(limit).Documents(ctx).GetAll()
	if err != nil {
		return selected{}, err
	}
	var page selected
	var last bulkCursor
	for _, d := range docs {
		last = bulkCursor{ID: d.Ref.ID}
		if ranged {
			v, _ := d.DataAtPath(path)
			last.Value, _ = v.(int64)
		}
		if id, err := strconv.ParseInt(d.Ref.ID, 10, 64); err == nil && id > 0 {
			page.add(id, last)
		}
	}
	if len(docs) == limit {
		page.next = encodeCursor(last)
	}
	return page, nil
}

// selectLedger pages through the ledger entries of all players that match
// a ledger selection, newest first, and lists their players once each.
func (s *Store) selectLedger(ctx context.Context, sel save.BulkSelection, c bulkCursor, limit int) (selected, error) {
	q := s.fs.CollectionGroup(ledgerCollection).Query
	if sel.ActorKind != "" {
		q = q.Where(ledgerActorKind, "==", string(sel.ActorKind))
		if sel.ActorID != "" {
			q = q.Where(ledgerActorID, "==", sel.ActorID)
		}
	}
	if !sel.From.IsZero() {
		q = q.Where(ledgerCommittedAt, ">=", sel.From)
	}
	q = q.Where(ledgerCommittedAt, "<", sel.To).OrderBy(ledgerCommittedAt, firestore.Desc).OrderBy(firestore.DocumentID, firestore.Desc).
		Select(ledgerUserID, ledgerOps, ledgerCommittedAt)
	if c.Path != "" {
		q = q.StartAfter(time.UnixMicro(c.At).UTC(), s.fs.Doc(c.Path))
	}
	it := q.Limit(bulkLedgerScan).Documents(ctx)
	defer it.Stop()
	var page selected
	listed := make(map[int64]bool)
	var last bulkCursor
	scanned := 0
	for {
		d, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return selected{}, err
		}
		scanned++
		e := ledgerDocOf(d)
		last = bulkCursor{At: e.CommittedAt.UnixMicro(), Path: strings.TrimPrefix(d.Ref.Path, s.database+"/documents/")}
		if listed[e.UserID] || e.UserID <= 0 || !entryMatches(sel, e) {
			continue
		}
		listed[e.UserID] = true
		page.add(e.UserID, last)
		if len(page.ids) == limit {
			page.next = encodeCursor(last)
			return page, nil
		}
	}
	if scanned == bulkLedgerScan {
		page.next = encodeCursor(last)
	}
	return page, nil
}

// entryMatches reports whether a ledger entry holds an op the selection names.
func entryMatches(sel save.BulkSelection, e ledgerDoc) bool {
	for _, op := range e.Ops {
		if _, ok := sel.LedgerAmount(op); ok {
			return true
		}
	}
	return false
}

// countSelection counts a selection's players with an aggregation query
// where Firestore can (all players, a save condition); ok is false for the
// others.
func (s *Store) countSelection(ctx context.Context, j *bulkJob) (int64, bool, error) {
	q := s.fs.Collection(playersCollection).Query
	switch j.sel.Kind {
	case save.SelectAll:
	case save.SelectSave:
		q = q.WherePath(saveFieldPath(j.sel.Field), j.sel.Cmp, j.sel.Value)
	case save.SelectIDs:
		return int64(len(j.sel.UserIDs)), true, nil
	default:
		return 0, false, nil
	}
	res, err := q.NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, false, err
	}
	switch v := res["n"].(type) {
	case int64:
		return v, true, nil
	case *firestorepb.Value:
		return v.GetIntegerValue(), true, nil
	}
	return 0, false, nil
}

// errNothingToDo marks a player for whom the job's ops come to nothing.
var errNothingToDo = errors.New("store: the bulk ops come to nothing for this player")

// errNoMatch marks a player whose save no longer matches the condition.
var errNoMatch = errors.New("store: the save no longer matches the condition")

// applyBulkPlayer changes one player with one mutation through the normal
// path, under a key derived from (job, player), so a job that resumes
// after a crash replays the committed mutation instead of applying it
// again. Ops that depend on the balance are computed from a read and
// applied to that version only, again on a conflict with a live change.
// It returns an error only when ctx ends: every other failure is the
// player's recorded outcome.
func (s *Store) applyBulkPlayer(ctx context.Context, j *bulkJob, userID int64) (BulkResult, error) {
	key := "bulk-" + j.id + "-" + strconv.FormatInt(userID, 10)
	reason := j.ledgerReason()
	usesHeld := save.UsesHeld(j.ops)
	r := BulkResult{UserID: userID, Changes: []save.Change{}}
	for attempt := 1; ; attempt++ {
		res, err := s.applyDerived(ctx, userID, j.actor(), key, reason, "", func() (MutationRequest, error) {
			p, err := s.readPlayer(ctx, userID)
			if err != nil {
				return MutationRequest{}, err
			}
			if !p.Exists {
				return MutationRequest{}, save.Errorf(save.CodeNotFound, "the player has no save")
			}
			st, err := s.currentState(p)
			if err != nil {
				return MutationRequest{}, err
			}
			if j.sel.Kind == save.SelectSave && !saveConditionHolds(s.cfg, j.sel, st) {
				return MutationRequest{}, errNoMatch
			}
			ops, err := s.bulkOps(ctx, j, userID, st)
			if err != nil {
				return MutationRequest{}, err
			}
			if len(ops) == 0 {
				return MutationRequest{}, errNothingToDo
			}
			m := save.Mutation{Ops: ops, Reason: reason}
			if usesHeld {
				v := p.Version
				m.ExpectedVersion = &v
			}
			return MutationRequest{Kind: LedgerKindBulk, BulkJobID: j.id, Mutation: m}, nil
		})
		r.At = s.now().UTC()
		code := save.ErrorCode(err)
		switch {
		case err == nil && res.Outcome.Unchanged:
			r.Outcome, r.Message = BulkSkipped, "the save already holds what the ops would set"
		case err == nil:
			r.Outcome, r.EntryID, r.Version, r.Changes = BulkChanged, res.Outcome.EntryID, res.Outcome.Version, res.Outcome.Changes
		case errors.Is(err, errNothingToDo):
			r.Outcome, r.Message = BulkSkipped, "the ops come to nothing for this player"
		case errors.Is(err, errNoMatch):
			r.Outcome, r.Message = BulkSkipped, "the save no longer matches the condition"
		case ctx.Err() != nil:
			return BulkResult{}, ctx.Err()
		case code == save.CodeNotFound:
			r.Outcome, r.Code, r.Message = BulkSkipped, string(code), "the player has no save"
		case (code == save.CodeVersionConflict || code == save.CodeUnavailable || code == save.CodeInternal) && attempt < maxBulkAttempts:
			if code != save.CodeVersionConflict {
				if err := sleep.For(ctx, time.Duration(attempt)*100*time.Millisecond); err != nil {
					return BulkResult{}, err
				}
			}
			continue
		case code == save.CodeInternal:
			r.Outcome, r.Code, r.Message = BulkFailed, string(code), "internal error"
		default:
			e, _ := save.AsError(err)
			r.Outcome, r.Code, r.Message = BulkFailed, string(code), e.Message
		}
		if r.Changes == nil {
			r.Changes = []save.Change{}
		}
		return r, nil
	}
}
