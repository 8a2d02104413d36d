package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// bulkAdmin is the administrator the bulk tests' jobs act as.
var bulkAdmin = save.Actor{Kind: save.ActorAdmin, ID: "admin-uid"}

// bulkServer is the game server that makes the tests' players.
var bulkServer = save.Actor{Kind: save.ActorServer, ID: "universe/1"}

// bulkEnv is a store with a fake clock and players made by a game server.
type bulkEnv struct {
	t     *testing.T
	st    *store.Store
	clock *firestoretest.Clock
}

func newBulkEnv(t *testing.T) *bulkEnv {
	t.Helper()
	clock := firestoretest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	st, _ := firestoretest.Store(t, store.Options{Now: clock.Now})
	return &bulkEnv{t: t, st: st, clock: clock}
}

// seed makes n players from first on, player i with ops(i), in one batch.
func (e *bulkEnv) seed(first int64, n int, ops func(i int) []save.Op) []int64 {
	e.t.Helper()
	reqs := make([]store.MutationRequest, n)
	ids := make([]int64, n)
	for i := range n {
		ids[i] = first + int64(i)
		reqs[i] = store.MutationRequest{UserID: ids[i], Actor: bulkServer, IdempotencyKey: fmt.Sprintf("seed-%d", ids[i]), Mutation: save.Mutation{Ops: ops(i)}}
	}
	for i, r := range e.st.ApplyMutations(context.Background(), reqs) {
		if r.Err != nil {
			e.t.Fatalf("seed player %d: %v", ids[i], r.Err)
		}
	}
	return ids
}

// create makes a job (not a dry run) and fails the test on error.
func (e *bulkEnv) create(key string, sel save.BulkSelection, ops string) (store.BulkJob, store.BulkPreview) {
	e.t.Helper()
	job, preview, _, err := e.st.CreateBulkJob(context.Background(), store.BulkJobRequest{
		Selection: sel, Ops: json.RawMessage(ops), Reason: "test compensation", Ticket: "T-1", Rate: store.MaxBulkRate,
		Actor: bulkAdmin, IdempotencyKey: key,
	}, false)
	if err != nil {
		e.t.Fatalf("CreateBulkJob(%s): %v", key, err)
	}
	return job, preview
}

// change starts, pauses, resumes or cancels a job and fails the test on error.
func (e *bulkEnv) change(jobID, action string) store.BulkJob {
	e.t.Helper()
	job, err := e.st.ChangeBulkJob(context.Background(), jobID, action)
	if err != nil {
		e.t.Fatalf("ChangeBulkJob(%s, %s): %v", jobID, action, err)
	}
	return job
}

// job reads a job.
func (e *bulkEnv) job(jobID string) store.BulkJob {
	e.t.Helper()
	job, err := e.st.GetBulkJob(context.Background(), jobID)
	if err != nil {
		e.t.Fatal(err)
	}
	return job
}

// results reads a job's outcomes by user id.
func (e *bulkEnv) results(jobID string) map[int64]store.BulkResult {
	e.t.Helper()
	out := map[int64]store.BulkResult{}
	err := e.st.BulkResults(context.Background(), jobID, func(r store.BulkResult) error {
		if _, dup := out[r.UserID]; dup {
			e.t.Errorf("player %d has two results", r.UserID)
		}
		out[r.UserID] = r
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// bulkEntries counts a player's ledger entries written by a job.
func (e *bulkEnv) bulkEntries(userID int64, jobID string) int {
	e.t.Helper()
	page, err := e.st.SearchLedger(context.Background(), userID, store.AuditQuery{Limit: store.MaxLedgerPage})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, en := range page.Entries {
		if en.Kind == store.LedgerKindBulk && en.BulkJobID == jobID {
			n++
		}
	}
	return n
}

// balance is a player's balance at a path such as currencies.gems.
func (e *bulkEnv) balance(userID int64, group, id string) int64 {
	e.t.Helper()
	p, err := e.st.GetPlayer(context.Background(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	n, _ := save.ChangeInt(p.Save[group].(map[string]any)[id])
	return n
}

func TestBulkJobChangesEachPlayerOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBulkEnv(t)
	const players = 300
	ids := e.seed(2_000_000_001, players, func(i int) []save.Op {
		return []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: int64(i + 1)}}
	})
	job, preview := e.create("crash", save.BulkSelection{Kind: save.SelectAll}, `[{"op":"currency.add","currency":"gems","amount":5}]`)
	if preview.Matched != players || !preview.MatchedExact {
		t.Errorf("preview matched %d (exact %v), want %d exactly", preview.Matched, preview.MatchedExact, players)
	}
	e.change(job.JobID, store.BulkStart)

	// The first runner dies after 120 players' mutations: its page is
	// half committed in the saves and not recorded in the job.
	runCtx, kill := context.WithCancel(ctx)
	var applied atomic.Int64
	store.SetBeforeApply(e.st, func(r *store.MutationRequest) {
		if r.BulkJobID != "" && applied.Add(1) == 120 {
			kill()
		}
	})
	first := store.NewBulkRunner(e.st, store.BulkRunnerOptions{Holder: "first", PageSize: 50})
	if _, err := first.RunOnce(runCtx); err == nil && runCtx.Err() == nil {
		t.Fatal("the first runner finished the job; it was meant to die midway")
	}
	mid := e.job(job.JobID)
	if mid.State != store.BulkRunning || mid.Matched >= players {
		t.Fatalf("after the crash the job is %s with %d matched, want running with fewer than %d", mid.State, mid.Matched, players)
	}

	// A runner that died holding the lease keeps the others out until it
	// expires.
	dead := store.NewBulkRunner(e.st, store.BulkRunnerOptions{Holder: "dead", LeaseTTL: 30 * time.Second})
	if ok, err := store.ClaimBulkJob(ctx, dead, job.JobID); err != nil || !ok {
		t.Fatalf("the dead runner's claim = %v, %v; want it held", ok, err)
	}
	second := store.NewBulkRunner(e.st, store.BulkRunnerOptions{Holder: "second", PageSize: 50})
	if n, err := second.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second runner while the lease is held: worked on %d jobs, %v; want 0", n, err)
	}
	e.clock.Advance(31 * time.Second)
	if n, err := second.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("second runner after the lease expired: worked on %d jobs, %v; want 1", n, err)
	}

	got := e.job(job.JobID)
	want := store.BulkJob{State: store.BulkDone, Matched: players, Done: players, Effect: map[string]int64{"currencies.gems": 5 * players}}
	if diff := cmp.Diff(want, got, cmpProgress); diff != "" {
		t.Errorf("job after the restart (-want +got):\n%s", diff)
	}
	results := e.results(job.JobID)
	if len(results) != players {
		t.Errorf("%d results, want %d", len(results), players)
	}
	for _, id := range ids {
		if n := e.bulkEntries(id, job.JobID); n != 1 {
			t.Errorf("player %d has %d entries of the job, want exactly 1", id, n)
		}
		if g := e.balance(id, "currencies", "gems"); g != 5 {
			t.Errorf("player %d has %d gems, want 5", id, g)
		}
		if r := results[id]; r.Outcome != store.BulkChanged || r.EntryID == "" {
			t.Errorf("player %d result = %+v, want done with its entry", id, r)
		}
	}
	for _, id := range ids[:5] {
		ledgerSums(t, e.st, id)
	}
}

// cmpProgress compares the state and counters of jobs.
var cmpProgress = cmp.Comparer(func(a, b store.BulkJob) bool {
	return a.State == b.State && a.Matched == b.Matched && a.Done == b.Done && a.Failed == b.Failed && a.Skipped == b.Skipped &&
		cmp.Equal(a.Effect, b.Effect)
})

func TestBulkJobPausesAndResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBulkEnv(t)
	e.seed(2_100_000_001, 120, func(int) []save.Op { return []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 1}} })
	job, _ := e.create("pause", save.BulkSelection{Kind: save.SelectAll}, `[{"op":"item.grant","item":"potion","count":1}]`)
	e.change(job.JobID, store.BulkStart)

	// The administrator pauses while the first page runs: the page is
	// recorded, and the runner stops there.
	var once sync.Once
	store.SetBeforeApply(e.st, func(r *store.MutationRequest) {
		if r.BulkJobID != "" {
			once.Do(func() { e.change(job.JobID, store.BulkPause) })
		}
	})
	runner := store.NewBulkRunner(e.st, store.BulkRunnerOptions{PageSize: 50})
	if _, err := runner.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	paused := e.job(job.JobID)
	if diff := cmp.Diff(store.BulkJob{State: store.BulkPaused, Matched: 50, Done: 50, Effect: map[string]int64{"items.potion": 50}}, paused, cmpProgress); diff != "" {
		t.Errorf("paused job (-want +got):\n%s", diff)
	}
	if n, err := runner.RunOnce(ctx); err != nil || n != 0 {
		t.Errorf("runner on a paused job worked on %d jobs, %v; want 0", n, err)
	}
	if _, err := e.st.ChangeBulkJob(ctx, job.JobID, store.BulkPause); save.ErrorCode(err) != save.CodeFailedPrecondition {
		t.Errorf("second pause = %v, want FAILED_PRECONDITION", err)
	}
	e.change(job.JobID, store.BulkResume)
	if _, err := runner.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.BulkJob{State: store.BulkDone, Matched: 120, Done: 120, Effect: map[string]int64{"items.potion": 120}}, e.job(job.JobID), cmpProgress); diff != "" {
		t.Errorf("resumed job (-want +got):\n%s", diff)
	}
}

func TestBulkJobRecordsFloorsAsFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBulkEnv(t)
	// Coins start at 100: players get 0, 300, 600, 900 more.
	ids := e.seed(2_200_000_001, 4, func(i int) []save.Op {
		if i == 0 {
			return []save.Op{{Kind: save.OpItemGrant, Item: "sword", Count: 1}}
		}
		return []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: int64(300 * i)}}
	})
	cases := []struct {
		name     string
		ops      string
		want     store.BulkJob
		outcomes map[int64]string
		coins    []int64
	}{{
		name:     "a fixed take-back fails below the floor",
		ops:      `[{"op":"currency.add","currency":"coins","amount":-500}]`,
		want:     store.BulkJob{State: store.BulkDone, Matched: 4, Done: 2, Failed: 2, Effect: map[string]int64{"currencies.coins": -1000}},
		outcomes: map[int64]string{ids[0]: store.BulkFailed, ids[1]: store.BulkFailed, ids[2]: store.BulkChanged, ids[3]: store.BulkChanged},
		coins:    []int64{100, 400, 200, 500},
	}, {
		name:     "as far as held takes what is there",
		ops:      `[{"op":"currency.add","currency":"coins","amount":"-min(held, 300)"}]`,
		want:     store.BulkJob{State: store.BulkDone, Matched: 4, Done: 3, Skipped: 1, Effect: map[string]int64{"currencies.coins": -100 - 300 - 200}},
		outcomes: map[int64]string{ids[0]: store.BulkChanged, ids[1]: store.BulkChanged, ids[2]: store.BulkChanged, ids[3]: store.BulkSkipped},
		coins:    []int64{0, 100, 0, 500},
	}}
	// The second case runs on what the first left, except the last player,
	// whose selection leaves them out: explicit ids.
	for i, tc := range cases {
		sel := save.BulkSelection{Kind: save.SelectIDs, UserIDs: ids}
		if i == 1 {
			sel.UserIDs = append(ids[:3:3], 2_200_009_999) // one player without a save
		}
		job, _ := e.create(fmt.Sprintf("floors-%d", i), sel, tc.ops)
		e.change(job.JobID, store.BulkStart)
		if _, err := store.NewBulkRunner(e.st, store.BulkRunnerOptions{}).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, e.job(job.JobID), cmpProgress); diff != "" {
			t.Errorf("%s: job (-want +got):\n%s", tc.name, diff)
		}
		results := e.results(job.JobID)
		for id, want := range tc.outcomes {
			if i == 1 && id == ids[3] {
				id = 2_200_009_999
			}
			r := results[id]
			if r.Outcome != want {
				t.Errorf("%s: player %d outcome %q (%s %s), want %q", tc.name, id, r.Outcome, r.Code, r.Message, want)
			}
			if want == store.BulkFailed && r.Code != string(save.CodeInsufficientFunds) {
				t.Errorf("%s: player %d failed with %q, want INSUFFICIENT_FUNDS", tc.name, id, r.Code)
			}
		}
		for k, id := range ids {
			if got := e.balance(id, "currencies", "coins"); got != tc.coins[k] {
				t.Errorf("%s: player %d has %d coins, want %d", tc.name, id, got, tc.coins[k])
			}
		}
	}
}

func TestBulkJobTakesBackWhatLedgerEntriesGranted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBulkEnv(t)
	exploit := save.Actor{Kind: save.ActorServer, ID: "universe/exploit"}
	from := e.clock.Now()
	// The exploit granted potions to three players; one of them drank two
	// since, another got potions from elsewhere too.
	for i, n := range []int64{5, 3, 4} {
		id := int64(2_300_000_001 + i)
		apply(t, e.st, id, exploit, fmt.Sprintf("exploit-%d-a", id), save.Op{Kind: save.OpItemGrant, Item: "potion", Count: n})
		apply(t, e.st, id, exploit, fmt.Sprintf("exploit-%d-b", id), save.Op{Kind: save.OpItemGrant, Item: "potion", Count: 1})
	}
	e.clock.Advance(time.Hour)
	apply(t, e.st, 2_300_000_002, bulkServer, "drink", save.Op{Kind: save.OpItemConsume, Item: "potion", Count: 3})
	apply(t, e.st, 2_300_000_003, bulkServer, "elsewhere", save.Op{Kind: save.OpItemGrant, Item: "potion", Count: 10})
	apply(t, e.st, 2_300_000_004, bulkServer, "bystander", save.Op{Kind: save.OpItemGrant, Item: "potion", Count: 7})
	e.clock.Advance(time.Hour)

	sel := save.BulkSelection{Kind: save.SelectLedger, Op: save.OpItemGrant, Target: "potion", ActorKind: save.ActorServer, ActorID: exploit.ID, From: from}
	ops := `[{"op":"item.consume","item":"potion","count":"min(granted, held)"}]`
	_, preview, _, err := e.st.CreateBulkJob(ctx, store.BulkJobRequest{Selection: sel, Ops: json.RawMessage(ops), Reason: "exploit", Ticket: "T-9", Actor: bulkAdmin}, true)
	if err != nil {
		t.Fatal(err)
	}
	wantPreview := store.BulkPreview{Matched: 3, MatchedExact: true, Scanned: 3, Changed: 3, Effect: map[string]int64{"items.potion": -6 - 1 - 5}, EffectComplete: true}
	if diff := cmp.Diff(wantPreview, preview, cmpPreview); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if page, err := e.st.ListBulkJobs(ctx, "", 0); err != nil || len(page.Jobs) != 0 {
		t.Errorf("after a dry run the jobs are %+v, %v; want none", page.Jobs, err)
	}

	job, _ := e.create("exploit", sel, ops)
	e.change(job.JobID, store.BulkStart)
	if _, err := store.NewBulkRunner(e.st, store.BulkRunnerOptions{}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.BulkJob{State: store.BulkDone, Matched: 3, Done: 3, Effect: wantPreview.Effect}, e.job(job.JobID), cmpProgress); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	for id, want := range map[int64]int64{2_300_000_001: 0, 2_300_000_002: 0, 2_300_000_003: 10, 2_300_000_004: 7} {
		if got := e.balance(id, "items", "potion"); got != want {
			t.Errorf("player %d holds %d potions, want %d", id, got, want)
		}
	}
}

// cmpPreview compares previews without their sample.
var cmpPreview = cmp.Comparer(func(a, b store.BulkPreview) bool {
	a.Sample, b.Sample = nil, nil
	return cmp.Equal(a, b)
})

func TestBulkJobRefusesBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBulkEnv(t)
	e.seed(2_400_000_001, 2, func(int) []save.Op { return []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 1}} })
	req := func(sel save.BulkSelection, ops string) store.BulkJobRequest {
		return store.BulkJobRequest{Selection: sel, Ops: json.RawMessage(ops), Reason: "r", Ticket: "T", Actor: bulkAdmin, IdempotencyKey: "k-" + ops}
	}
	all := save.BulkSelection{Kind: save.SelectAll}
	cases := []struct {
		name string
		req  store.BulkJobRequest
		want save.Code
	}{
		{"a versioned op", req(all, `[{"op":"save.replace","save":{}}]`), save.CodePermissionDenied},
		{"a purchase", req(all, `[{"op":"purchase","sku":"starter"}]`), save.CodePermissionDenied},
		{"a bad expression", req(all, `[{"op":"currency.add","currency":"coins","amount":"held +"}]`), save.CodeInvalidArgument},
		{"an unknown name", req(all, `[{"op":"currency.add","currency":"coins","amount":"coins * 2"}]`), save.CodeInvalidArgument},
		{"granted without a ledger selection", req(all, `[{"op":"currency.add","currency":"coins","amount":"-granted"}]`), save.CodeInvalidArgument},
		{"an undeclared currency", req(all, `[{"op":"currency.add","currency":"rubies","amount":1}]`), save.CodeInvalidArgument},
		{"no ops", req(all, `[]`), save.CodeInvalidArgument},
		{"an unknown selection", req(save.BulkSelection{Kind: "some"}, `[{"op":"xp.add","amount":1}]`), save.CodeInvalidArgument},
		{"a condition on an undeclared field", req(save.BulkSelection{Kind: save.SelectSave, Field: "currencies.rubies", Cmp: ">", Value: 1}, `[{"op":"xp.add","amount":1}]`), save.CodeInvalidArgument},
		{"a duplicate id", req(save.BulkSelection{Kind: save.SelectIDs, UserIDs: []int64{5, 5}}, `[{"op":"xp.add","amount":1}]`), save.CodeInvalidArgument},
		{"no idempotency key", store.BulkJobRequest{Selection: all, Ops: json.RawMessage(`[{"op":"xp.add","amount":1}]`), Actor: bulkAdmin}, save.CodeInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := e.st.CreateBulkJob(ctx, tc.req, false); save.ErrorCode(err) != tc.want {
				t.Errorf("CreateBulkJob = %v, want %s", err, tc.want)
			}
		})
	}
	if page, err := e.st.ListBulkJobs(ctx, "", 0); err != nil || len(page.Jobs) != 0 {
		t.Errorf("after refused jobs the jobs are %+v, %v; want none", page.Jobs, err)
	}

	// A selection that matches nobody cannot start; a started job cannot
	// start again; a replayed creation answers the same job.
	empty, _ := e.create("empty", save.BulkSelection{Kind: save.SelectSave, Field: "currencies.coins", Cmp: ">", Value: 1_000_000}, `[{"op":"xp.add","amount":1}]`)
	if _, err := e.st.ChangeBulkJob(ctx, empty.JobID, store.BulkStart); save.ErrorCode(err) != save.CodeSelectionEmpty {
		t.Errorf("start of an empty selection = %v, want SELECTION_EMPTY", err)
	}
	job, _ := e.create("twice", save.BulkSelection{Kind: save.SelectSave, Field: "currencies.coins", Cmp: ">=", Value: 101}, `[{"op":"xp.add","amount":1}]`)
	again, _ := e.create("twice", save.BulkSelection{Kind: save.SelectSave, Field: "currencies.coins", Cmp: ">=", Value: 101}, `[{"op":"xp.add","amount":1}]`)
	if again.JobID != job.JobID {
		t.Errorf("replayed creation made job %s, want %s", again.JobID, job.JobID)
	}
	if _, _, _, err := e.st.CreateBulkJob(ctx, store.BulkJobRequest{Selection: all, Ops: json.RawMessage(`[{"op":"xp.add","amount":2}]`), Reason: "test compensation", Ticket: "T-1", Actor: bulkAdmin, IdempotencyKey: "twice"}, false); save.ErrorCode(err) != save.CodeIdempotencyKeyReused {
		t.Errorf("another job under the same key = %v, want IDEMPOTENCY_KEY_REUSED", err)
	}
	e.change(job.JobID, store.BulkStart)
	if _, err := e.st.ChangeBulkJob(ctx, job.JobID, store.BulkStart); save.ErrorCode(err) != save.CodeFailedPrecondition {
		t.Errorf("second start = %v, want FAILED_PRECONDITION", err)
	}
	if _, err := store.NewBulkRunner(e.st, store.BulkRunnerOptions{}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.BulkJob{State: store.BulkDone, Matched: 2, Done: 2, Effect: map[string]int64{"stats.xp": 2}}, e.job(job.JobID), cmpProgress); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	if _, err := e.st.ChangeBulkJob(ctx, job.JobID, store.BulkCancel); save.ErrorCode(err) != save.CodeFailedPrecondition {
		t.Errorf("cancel of a done job = %v, want FAILED_PRECONDITION", err)
	}
	if _, err := e.st.GetBulkJob(ctx, "bj0000000000000000000000"); save.ErrorCode(err) != save.CodeNotFound {
		t.Errorf("unknown job = %v, want NOT_FOUND", err)
	}
}
