package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/savesync/savesync/internal/sleep"
	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

// BulkRunnerOptions tune a BulkRunner. Zero values take the defaults.
type BulkRunnerOptions struct {
	// Holder names this instance in the jobs' leases (a random id).
	Holder string
	// LeaseTTL is how long a job's lease lasts without renewal (30 s): how
	// long a job waits after its runner dies before another instance
	// takes it over. Each page renews it.
	LeaseTTL time.Duration
	// PollInterval is how often the runner looks for running jobs (1 s).
	PollInterval time.Duration
	// PageSize is how many players one page changes and records in one
	// commit (50): a pause or cancel takes effect within a page.
	PageSize int
	// ReadSize is how many players one query of the selection reads (500),
	// worked through a page at a time.
	ReadSize int
	// MaxJobs bounds the jobs this runner works on at once (8).
	MaxJobs int
	// Concurrency bounds the players of a page changed at once (8).
	Concurrency int
}

// BulkRunner works through running bulk jobs: page by page along each
// job's selection, one mutation per player at the job's rate, recording
// every player's outcome and the job's progress with each page. One
// instance runs a job at a time, under a lease in the job's document; an
// instance that dies leaves the lease to expire, and the next runner goes
// on from the job's cursor. Players already changed by the dead runner
// but not yet recorded replay their committed mutation (the key derives
// from the job and the player), so each player changes once.
type BulkRunner struct {
	store *Store
	opts  BulkRunnerOptions
}

// NewBulkRunner returns a runner over a store.
func NewBulkRunner(s *Store, opts BulkRunnerOptions) *BulkRunner {
	if opts.Holder == "" {
		opts.Holder = "bulk-" + s.newID()
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	if opts.MaxJobs <= 0 {
		opts.MaxJobs = 8
	}
	if opts.ReadSize < opts.PageSize {
		opts.ReadSize = max(500, opts.PageSize)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	return &BulkRunner{store: s, opts: opts}
}

// Run works on running jobs until ctx ends, up to MaxJobs at once, each
// on its own, so a slow job does not hold up the others. Failures are
// logged and retried at the next poll.
func (r *BulkRunner) Run(ctx context.Context) error {
	log := logging.FromContext(ctx)
	var mu sync.Mutex
	active := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		ids, err := r.runningJobs(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("bulk job runner: listing running jobs failed; retrying", "error", err.Error())
		}
		for _, id := range ids {
			mu.Lock()
			if active[id] || len(active) >= r.opts.MaxJobs {
				mu.Unlock()
				continue
			}
			active[id] = true
			mu.Unlock()
			wg.Go(func() {
				if _, err := r.work(ctx, id); err != nil && ctx.Err() == nil {
					log.Warn("bulk job runner: a job's round failed; retrying", "jobId", id, "error", err.Error())
				}
				mu.Lock()
				delete(active, id)
				mu.Unlock()
			})
		}
		if err := sleep.For(ctx, r.opts.PollInterval); err != nil {
			return nil
		}
	}
}

// RunOnce works on the running jobs whose lease is free, at once, each
// until it is done, paused or cancelled, its lease is lost, or ctx ends.
// It reports how many jobs it worked on.
func (r *BulkRunner) RunOnce(ctx context.Context) (int, error) {
	ids, err := r.runningJobs(ctx)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	var errs []error
	n := 0
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			worked, err := r.work(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if worked {
				n++
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return n, errors.Join(errs...)
}

// runningJobs lists the ids of running jobs.
func (r *BulkRunner) runningJobs(ctx context.Context) ([]string, error) {
	docs, err := r.store.fs.Collection(bulkJobsCollection).Where("state", "==", BulkRunning).Select().Limit(100).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("store.BulkRunner: list running jobs: %w", err)
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.Ref.ID
	}
	return ids, nil
}

// errLeaseLost marks a page whose job another runner took over.
var errLeaseLost = errors.New("store: the bulk job's lease is held by another runner")

// work claims a job and runs its pages while it holds the lease.
func (r *BulkRunner) work(ctx context.Context, jobID string) (bool, error) {
	j, ok, err := r.claim(ctx, jobID)
	if err != nil || !ok {
		return false, err
	}
	defer r.release(ctx, jobID)
	p := &pacer{rate: float64(max(j.doc.Rate, 1)), start: time.Now()}
	for {
		page, err := r.store.selectPage(ctx, j, j.doc.Cursor, r.opts.ReadSize)
		if err != nil {
			return true, err
		}
		for start := 0; ; start += r.opts.PageSize {
			end := min(start+r.opts.PageSize, len(page.ids))
			after := page.next
			if end < len(page.ids) {
				after = page.after[end-1]
			}
			state, err := r.runPage(ctx, j, page.ids[start:end], after, p)
			switch {
			case errors.Is(err, errLeaseLost):
				return true, nil
			case err != nil:
				return true, err
			case state != BulkRunning:
				return true, nil
			}
			if end == len(page.ids) {
				break
			}
		}
	}
}

// claim takes a running job's lease when it is free, expired or already
// this runner's, and loads the job.
func (r *BulkRunner) claim(ctx context.Context, jobID string) (*bulkJob, bool, error) {
	s := r.store
	ref := s.fs.Collection(bulkJobsCollection).Doc(jobID)
	var j *bulkJob
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		j = nil
		cur, err := s.bulkJobInTxn(tx, ref)
		if err != nil {
			return err
		}
		now := s.now()
		if cur.doc.State != BulkRunning || (cur.doc.LeaseHolder != "" && cur.doc.LeaseHolder != r.opts.Holder && cur.doc.LeaseExpires.After(now)) {
			return nil
		}
		cur.doc.LeaseHolder, cur.doc.LeaseExpires = r.opts.Holder, now.Add(r.opts.LeaseTTL)
		j = cur
		return tx.Update(ref, []firestore.Update{{Path: "leaseHolder", Value: r.opts.Holder}, {Path: "leaseExpiresAt", Value: cur.doc.LeaseExpires}})
	})
	if err != nil {
		return nil, false, fmt.Errorf("store.BulkRunner: claim job %s: %w", jobID, err)
	}
	return j, j != nil, nil
}

// release gives a job's lease up if this runner holds it, so another
// instance may go on at once.
func (r *BulkRunner) release(ctx context.Context, jobID string) {
	s := r.store
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ref := s.fs.Collection(bulkJobsCollection).Doc(jobID)
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return err
		}
		if holder, _ := snap.DataAt("leaseHolder"); holder != r.opts.Holder {
			return nil
		}
		return tx.Update(ref, []firestore.Update{{Path: "leaseHolder", Value: ""}})
	})
	if err != nil {
		logging.FromContext(ctx).Warn("bulk job lease not released; it expires by itself", "jobId", jobID, "error", err.Error())
	}
}

// runPage changes a page of players and records their outcomes, the
// job's progress, its cursor (next: the position after the page) and the
// lease's renewal in one transaction. It returns the job's state after the
// page. When ctx ends mid-page nothing is recorded: the next runner
// replays the page.
func (r *BulkRunner) runPage(ctx context.Context, j *bulkJob, ids []int64, next string, p *pacer) (string, error) {
	s := r.store
	began := time.Now()
	jobRef := s.fs.Collection(bulkJobsCollection).Doc(j.id)
	refs := make([]*firestore.DocumentRef, 0, len(ids))
	seen := make(map[int64]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			refs = append(refs, jobRef.Collection(bulkResultsCollection).Doc(strconv.FormatInt(id, 10)))
		}
	}
	todo, err := r.unrecorded(ctx, refs)
	if err != nil {
		return "", err
	}
	results := make(map[string]BulkResult, len(todo))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.opts.Concurrency)
	for _, ref := range todo {
		if err := p.wait(ctx); err != nil {
			break
		}
		id, _ := strconv.ParseInt(ref.ID, 10, 64)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			res, err := s.applyBulkPlayer(ctx, j, id)
			if err != nil {
				return
			}
			mu.Lock()
			results[ref.ID] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	elapsed := time.Since(began).Seconds()
	var state string
	err = s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		cur, err := s.bulkJobInTxn(tx, jobRef)
		if err != nil {
			return err
		}
		if cur.doc.LeaseHolder != r.opts.Holder {
			return errLeaseLost
		}
		existing, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		if cur.doc.Effect == nil {
			cur.doc.Effect = map[string]int64{}
		}
		recorded := 0
		for _, snap := range existing {
			res, ok := results[snap.Ref.ID]
			if snap.Exists() || !ok {
				continue
			}
			changes, _ := json.Marshal(res.Changes)
			if err := tx.Create(snap.Ref, bulkResultDoc{
				UserID: res.UserID, Outcome: res.Outcome, Code: res.Code, Message: res.Message,
				EntryID: res.EntryID, Version: res.Version, Changes: string(changes), At: res.At,
			}); err != nil {
				return err
			}
			recorded++
			cur.doc.Matched++
			switch res.Outcome {
			case BulkChanged:
				cur.doc.Done++
				save.Effect(cur.doc.Effect, res.Changes)
			case BulkFailed:
				cur.doc.Failed++
			default:
				cur.doc.Skipped++
			}
		}
		now := s.now().UTC()
		cur.doc.Cursor, cur.doc.UpdatedAt = next, now
		cur.doc.LeaseExpires = now.Add(r.opts.LeaseTTL)
		if elapsed > 0 && recorded > 0 {
			cur.doc.MeasuredRate = float64(recorded) / elapsed
		}
		if next == "" && (cur.doc.State == BulkRunning || cur.doc.State == BulkPaused) {
			cur.doc.State, cur.doc.FinishedAt, cur.doc.LeaseHolder = BulkDone, now, ""
		}
		state = cur.doc.State
		j.doc = cur.doc
		return tx.Set(jobRef, cur.doc)
	})
	if err != nil && !errors.Is(err, errLeaseLost) {
		err = fmt.Errorf("store.BulkRunner: record a page of job %s: %w", j.id, err)
	}
	return state, err
}

// unrecorded returns the refs whose result does not exist yet: players a
// resumed page or a ledger selection lists again are not changed again.
func (r *BulkRunner) unrecorded(ctx context.Context, refs []*firestore.DocumentRef) ([]*firestore.DocumentRef, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	snaps, err := r.store.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, err
	}
	out := make([]*firestore.DocumentRef, 0, len(refs))
	for _, snap := range snaps {
		if !snap.Exists() {
			out = append(out, snap.Ref)
		}
	}
	return out, nil
}

// pacer spaces players out to a rate.
type pacer struct {
	mu    sync.Mutex
	rate  float64
	start time.Time
	n     int64
}

// wait blocks until the next player is due. A runner that fell more than
// a second behind starts counting again, rather than bursting to catch up.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	if now.Sub(due) > time.Second {
		p.start, p.n, due = now, 0, now
	}
	p.n++
	p.mu.Unlock()
	if d := time.Until(due); d > 0 {
		return sleep.For(ctx, d)
	}
	return ctx.Err()
}
