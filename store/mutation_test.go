package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/fstest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// TestOversizedLedgerEntryFailsAlone sends, in one group, a mutation whose
// ledger entry (ops, old → new, stored response) would exceed Firestore's
// document limit and a small one: the first is refused with
// LIMIT_EXCEEDED, the second commits.
func TestOversizedLedgerEntryFailsAlone(t *testing.T) {
	t.Parallel()
	cfg, err := save.ParseConfig([]byte(`{
		"game": "Big bios", "schemaVersion": 1,
		"currencies": {"coins": {"floor": 0, "cap": 1000000, "start": 100}},
		"settings": {"bio": {"type": "string", "default": "", "maxLength": 400000}},
		"limits": {"maxSaveBytes": 900000}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	project := fstest.Project(t)
	c := fstest.Dial(t, project)
	st := store.New(c.Firestore, c.GAPIC, project, cfg, store.Options{})
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	results := st.ApplyMutations(context.Background(), []store.MutationRequest{
		{UserID: 5, Actor: server, IdempotencyKey: "big", Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "bio", Value: strings.Repeat("x", 360000)}}}},
		{UserID: 5, Actor: server, IdempotencyKey: "small", Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 7}}}},
	})
	if code := save.ErrorCode(results[0].Err); code != save.CodeLimitExceeded {
		t.Errorf("oversized mutation: %v, want LIMIT_EXCEEDED", results[0].Err)
	}
	if results[1].Err != nil || results[1].Result.Outcome.Version != 1 {
		t.Errorf("small mutation: %+v, %v; want committed as version 1", results[1].Result.Outcome, results[1].Err)
	}
	p, err := st.GetPlayer(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.Save["settings"].(map[string]any)["bio"] != "" {
		t.Errorf("player after the group: version %d bio %d bytes, want version 1 and no bio", p.Version, len(p.Save["settings"].(map[string]any)["bio"].(string)))
	}
}

// TestBadMemberFailsAlone sends 40 concurrent mutations of one player, one
// of which cannot be committed: text Firestore cannot store (not valid
// UTF-8) in a field no edge check has looked at, or a panic while it is
// applied. That one fails on its own, with INVALID_ARGUMENT when its input
// is the cause; the other 39 commit exactly once.
func TestBadMemberFailsAlone(t *testing.T) {
	t.Parallel()
	const n, bad = 40, 20
	good := func(i int) store.MutationRequest {
		return store.MutationRequest{
			UserID: 41, Actor: save.Actor{Kind: save.ActorServer, ID: "universe/1"}, JobID: "job-1",
			IdempotencyKey: fmt.Sprintf("k%02d", i),
			Mutation:       save.Mutation{Ops: []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 1}}},
		}
	}
	tests := []struct {
		name string
		// bad changes the bad member's request; hook changes it while it
		// is applied, after every check of the request.
		bad      func(store.MutationRequest) store.MutationRequest
		hook     func(*store.MutationRequest)
		wantCode save.Code
	}{
		{name: "job id not UTF-8", wantCode: save.CodeInvalidArgument, bad: func(r store.MutationRequest) store.MutationRequest {
			r.JobID = "job-\xff"
			return r
		}},
		{name: "actor id not UTF-8", wantCode: save.CodeInvalidArgument, bad: func(r store.MutationRequest) store.MutationRequest {
			r.Actor.ID = "universe/\xc0\xaf"
			return r
		}},
		{name: "collection dot actor not UTF-8", wantCode: save.CodeInvalidArgument, bad: func(r store.MutationRequest) store.MutationRequest {
			r.Actor.ID = "\xed\xa0\x80"
			r.Mutation.Ops = append(r.Mutation.Ops, save.Op{Kind: save.OpCollectionAdd, Collection: "badges", Element: "gold"})
			return r
		}},
		{name: "job id not UTF-8 past the checks", wantCode: save.CodeInvalidArgument, hook: func(r *store.MutationRequest) {
			r.JobID = "job-\xff"
		}},
		{name: "dot actor not UTF-8 past the checks", wantCode: save.CodeInvalidArgument, hook: func(r *store.MutationRequest) {
			r.Actor.ID = "\xff"
			r.Mutation.Ops = append(r.Mutation.Ops[:1:1], save.Op{Kind: save.OpCollectionAdd, Collection: "badges", Element: "gold"})
		}},
		{name: "panic in apply", wantCode: save.CodeInternal, hook: func(*store.MutationRequest) {
			panic("boom")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			project := fstest.Project(t)
			c := fstest.Dial(t, project)
			st := store.New(c.Firestore, c.GAPIC, project, fstest.GameConfig(t), store.Options{})
			badKey := fmt.Sprintf("k%02d", bad)
			if tt.hook != nil {
				store.SetBeforeApply(st, func(r *store.MutationRequest) {
					if r.IdempotencyKey == badKey {
						tt.hook(r)
					}
				})
			}
			reqs := make([]store.MutationRequest, n)
			for i := range reqs {
				reqs[i] = good(i)
			}
			if tt.bad != nil {
				reqs[bad] = tt.bad(reqs[bad])
			}
			errs := make([]error, n)
			versions := make([]int64, n)
			var wg sync.WaitGroup
			for i := range reqs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := st.ApplyMutation(context.Background(), reqs[i])
					errs[i], versions[i] = err, res.Outcome.Version
				}()
			}
			wg.Wait()

			if got := save.ErrorCode(errs[bad]); got != tt.wantCode {
				t.Errorf("bad member: %v, want %s", errs[bad], tt.wantCode)
			}
			seen := make(map[int64]bool)
			for i, err := range errs {
				if i == bad {
					continue
				}
				if err != nil {
					t.Errorf("member %d: %v, want committed", i, err)
					continue
				}
				if seen[versions[i]] {
					t.Errorf("member %d: version %d answered twice", i, versions[i])
				}
				seen[versions[i]] = true
			}
			p, err := st.GetPlayer(context.Background(), 41)
			if err != nil {
				t.Fatal(err)
			}
			entries, err := c.Firestore.Collection("players/41/ledger").Documents(context.Background()).GetAll()
			if err != nil {
				t.Fatal(err)
			}
			badges, _ := p.Save["collections"].(map[string]any)["badges"].([]string)
			got := map[string]int64{
				"version": p.Version,
				"ledger":  int64(len(entries)),
				"coins":   p.Save["currencies"].(map[string]any)["coins"].(int64),
				"badges":  int64(len(badges)),
			}
			want := map[string]int64{"version": n - 1, "ledger": n - 1, "coins": 100 + n - 1, "badges": 0}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("player after the run (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGroupOverRequestLimitCommits sends, in one call, more large mutations
// of one player than one Firestore request can carry (10 MiB), though each
// fits a document: the database refuses the group's commit, the group is
// split, and every mutation commits once, in order.
func TestGroupOverRequestLimitCommits(t *testing.T) {
	t.Parallel()
	cfg, err := save.ParseConfig([]byte(`{
		"game": "Big bios", "schemaVersion": 1,
		"settings": {"bio": {"type": "string", "default": "", "maxLength": 400000}},
		"limits": {"maxSaveBytes": 900000}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	project := fstest.Project(t)
	c := fstest.Dial(t, project)
	st := store.New(c.Firestore, c.GAPIC, project, cfg, store.Options{})
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	const n = 16
	reqs := make([]store.MutationRequest, n)
	for i := range reqs {
		bio := strings.Repeat(string(rune('a'+i)), 160000)
		reqs[i] = store.MutationRequest{UserID: 6, Actor: server, IdempotencyKey: fmt.Sprintf("bio-%d", i),
			Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "bio", Value: bio}}}}
	}
	for i, r := range st.ApplyMutations(context.Background(), reqs) {
		if r.Err != nil || r.Result.Outcome.Version != int64(i+1) {
			t.Errorf("mutation %d: version %d, %v; want committed as version %d", i, r.Result.Outcome.Version, r.Err, i+1)
		}
	}
	p, err := st.GetPlayer(context.Background(), 6)
	if err != nil {
		t.Fatal(err)
	}
	if bio := p.Save["settings"].(map[string]any)["bio"].(string); p.Version != n || bio[0] != byte('a'+n-1) {
		t.Errorf("player after the calls: version %d bio %q…, want version %d and the last bio", p.Version, bio[:1], n)
	}
}
