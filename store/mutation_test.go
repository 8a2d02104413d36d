package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// TestOversizedLedgerEntryFailsAlone sends, in one group, a mutation whose
// ledger entry (ops, old → new, stored response) would exceed Firestore's
// document limit and a small one: the first is refused with
// LIMIT_EXCEEDED, the second commits.
func TestOversizedLedgerEntryFailsAlone(t *testing.T) {
	t.Parallel()
	st := newBigBioStore(t)
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
			project := firestoretest.Project(t)
			c := firestoretest.Dial(t, project)
			st := store.New(c.Firestore, c.GAPIC, project, firestoretest.GameConfig(t), store.Options{})
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
	st := newBigBioStore(t)
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

// TestMutationThatChangesNothing checks that a mutation which would change
// nothing commits nothing: it answers the current version, marked
// unchanged, with no ledger entry, no version bump and no commit (so no
// event and no listener woken), alone or inside a group; and that a
// re-add of a present element, which renews its dot, is a change.
func TestMutationThatChangesNothing(t *testing.T) {
	t.Parallel()
	var commits atomic.Int64
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	st := store.New(c.Firestore, c.GAPIC, project, firestoretest.GameConfig(t), store.Options{OnCommit: func() { commits.Add(1) }})
	ctx := context.Background()
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	const userID = 51
	apply := func(t *testing.T, key string, m save.Mutation) store.MutationResult {
		t.Helper()
		res, err := st.ApplyMutation(ctx, store.MutationRequest{UserID: userID, Actor: server, IdempotencyKey: key, Mutation: m})
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return res
	}
	ledger := func(t *testing.T) int64 {
		t.Helper()
		docs, err := c.Firestore.Collection(fmt.Sprintf("players/%d/ledger", userID)).Documents(ctx).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(docs))
	}
	v := func(n int64) *int64 { return &n }
	apply(t, "seed-1", save.Mutation{Ops: []save.Op{
		{Kind: save.OpItemGrant, Item: "sword", Count: 1},
		{Kind: save.OpSettingsSet, Key: "volume", Value: int64(50)},
		{Kind: save.OpCollectionAdd, Collection: "badges", Element: "gold"},
	}})
	apply(t, "seed-2", save.Mutation{ExpectedVersion: v(1), Ops: []save.Op{{Kind: save.OpLoadoutSet, Slot: "primary", Item: "sword"}}})
	p, err := st.GetPlayer(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	sameSave := p.Save
	saveJSON, err := json.Marshal(sameSave)
	if err != nil {
		t.Fatal(err)
	}
	replace, err := save.DecodeMutation([]byte(`{"expectedVersion":2,"ops":[{"op":"save.replace","save":` + string(saveJSON) + `}]}`))
	if err != nil {
		t.Fatal(err)
	}

	noops := []struct {
		name string
		m    save.Mutation
	}{
		{"setting to its value", save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(50)}}}},
		{"setting to its untouched default", save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "music", Value: true}}}},
		{"remove of an absent element", save.Mutation{Ops: []save.Op{{Kind: save.OpCollectionRemove, Collection: "badges", Element: "silver"}}}},
		{"equip what the slot holds", save.Mutation{ExpectedVersion: v(2), Ops: []save.Op{{Kind: save.OpLoadoutSet, Slot: "primary", Item: "sword"}}}},
		{"clear an empty slot", save.Mutation{ExpectedVersion: v(2), Ops: []save.Op{{Kind: save.OpLoadoutSet, Slot: "offhand"}}}},
		{"replace with the same save", replace},
		{"two ops that cancel out", save.Mutation{Ops: []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 5}, {Kind: save.OpCurrencyAdd, Currency: "coins", Amount: -5}}}},
	}
	for _, tt := range noops {
		t.Run(tt.name, func(t *testing.T) {
			before := commits.Load()
			for _, key := range []string{"noop-" + tt.name, "noop-" + tt.name} { // the second is a retry
				res := apply(t, key, tt.m)
				want := save.Outcome{UserID: userID, VersionBefore: 2, Version: 2, SchemaVersion: 3, ChangedPaths: []string{}, Changes: []save.Change{}, Unchanged: true}
				if diff := cmp.Diff(want, res.Outcome, cmpopts.IgnoreFields(save.Outcome{}, "CommittedAt")); diff != "" || res.Replayed {
					t.Errorf("answer (-want +got):\n%s replayed=%v", diff, res.Replayed)
				}
			}
			p, err := st.GetPlayer(ctx, userID)
			if err != nil {
				t.Fatal(err)
			}
			if got := []int64{p.Version, ledger(t), commits.Load() - before}; !cmp.Equal(got, []int64{2, 2, 0}) {
				t.Errorf("version, ledger entries, commits = %v, want [2 2 0]", got)
			}
			if diff := cmp.Diff(sameSave, p.Save); diff != "" {
				t.Errorf("save changed (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("inside a group", func(t *testing.T) {
		before := st.Metrics().Transactions
		set := save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(50)}}}
		add := save.Mutation{Ops: []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 1}}}
		results := st.ApplyMutations(ctx, []store.MutationRequest{
			{UserID: userID, Actor: server, IdempotencyKey: "g-noop-1", Mutation: set},
			{UserID: userID, Actor: server, IdempotencyKey: "g-noop-2", Mutation: set},
		})
		for i, r := range results {
			if r.Err != nil || !r.Result.Outcome.Unchanged || r.Result.Outcome.Version != 2 {
				t.Errorf("only no-ops, member %d: %+v, %v; want unchanged at version 2", i, r.Result.Outcome, r.Err)
			}
		}
		if got := st.Metrics().Transactions - before; got != 0 {
			t.Errorf("a group of no-ops committed %d transactions, want 0", got)
		}
		results = st.ApplyMutations(ctx, []store.MutationRequest{
			{UserID: userID, Actor: server, IdempotencyKey: "g-add-1", Mutation: add},
			{UserID: userID, Actor: server, IdempotencyKey: "g-noop-3", Mutation: set},
			{UserID: userID, Actor: server, IdempotencyKey: "g-add-2", Mutation: add},
		})
		var got [][3]int64
		for _, r := range results {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			unchanged := int64(0)
			if r.Result.Outcome.Unchanged {
				unchanged = 1
			}
			got = append(got, [3]int64{r.Result.Outcome.VersionBefore, r.Result.Outcome.Version, unchanged})
		}
		if diff := cmp.Diff([][3]int64{{2, 3, 0}, {3, 3, 1}, {3, 4, 0}}, got); diff != "" {
			t.Errorf("(versionBefore, version, unchanged) per member (-want +got):\n%s", diff)
		}
		if n := ledger(t); n != 4 {
			t.Errorf("ledger entries = %d, want 4 (the two adds)", n)
		}
	})

	t.Run("re-adding a present element renews its dot", func(t *testing.T) {
		res := apply(t, "readd", save.Mutation{Ops: []save.Op{{Kind: save.OpCollectionAdd, Collection: "badges", Element: "gold"}}})
		if res.Outcome.Unchanged || res.Outcome.Version != 5 {
			t.Errorf("re-add: %+v, want committed as version 5", res.Outcome)
		}
	})
}

// newBigBioStore is a store whose game has coins and a "bio" setting of up
// to 400,000 characters, so a few mutations reach Firestore's size limits.
func newBigBioStore(t *testing.T) *store.Store {
	t.Helper()
	cfg, err := save.ParseConfig([]byte(`{
		"game": "Big bios", "schemaVersion": 1,
		"currencies": {"coins": {"floor": 0, "cap": 1000000, "start": 100}},
		"settings": {"bio": {"type": "string", "default": "", "maxLength": 400000}},
		"limits": {"maxSaveBytes": 900000}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	return store.New(c.Firestore, c.GAPIC, project, cfg, store.Options{})
}
