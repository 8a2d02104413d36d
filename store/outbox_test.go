package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// newOutboxStore returns a store over a fresh emulator project.
func newOutboxStore(t *testing.T, opts store.Options) (*store.Store, string) {
	t.Helper()
	return firestoretest.Store(t, opts)
}

// companion is the companion actor of the tests.
var companion = save.Actor{Kind: save.ActorCompanion, ID: "uid-outbox"}

// mustJoin joins a player on a game server.
func mustJoin(t *testing.T, st *store.Store, userID int64, jobID string) {
	t.Helper()
	if _, err := st.JoinSession(context.Background(), store.JoinRequest{UserID: userID, JobID: jobID}); err != nil {
		t.Fatalf("join %d on %s: %v", userID, jobID, err)
	}
}

// mustMutate commits one mutation.
func mustMutate(t *testing.T, st *store.Store, req store.MutationRequest) save.Outcome {
	t.Helper()
	res, err := st.ApplyMutation(context.Background(), req)
	if err != nil {
		t.Fatalf("mutate %d (%s): %v", req.UserID, req.IdempotencyKey, err)
	}
	return res.Outcome
}

// volumeSet is a companion-allowed mutation.
func volumeSet(v int64) save.Mutation {
	return save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: v}}}
}

// coinsAdd is a server-only mutation.
func coinsAdd(n int64) save.Mutation {
	return save.Mutation{Ops: []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: n}}}
}

// eventSummary is the part of an Event the tests compare.
type eventSummary struct {
	UserID       int64
	Version      int64
	Actor        save.ActorKind
	JobID        string
	Invalidate   bool
	HolderJobID  string
	ChangedPaths []string
}

func summarize(events []save.Event) []eventSummary {
	out := make([]eventSummary, len(events))
	for i, e := range events {
		out[i] = eventSummary{e.UserID, e.Version, e.Actor.Kind, e.JobID, e.Invalidate, e.HolderJobID, e.ChangedPaths}
	}
	return out
}

func TestPendingEventsUntilMarkedPublished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newOutboxStore(t, store.Options{})
	mustJoin(t, st, 11, "job-a")
	mustMutate(t, st, store.MutationRequest{UserID: 11, Actor: companion, IdempotencyKey: "c-1", Mutation: volumeSet(40)})
	mustMutate(t, st, store.MutationRequest{UserID: 11, Actor: save.Actor{Kind: save.ActorServer, ID: "universe/1"}, JobID: "job-a", IdempotencyKey: "s-1", Mutation: coinsAdd(5)})
	mustMutate(t, st, store.MutationRequest{UserID: 12, Actor: save.Actor{Kind: save.ActorServer, ID: "universe/1"}, JobID: "job-b", IdempotencyKey: "s-2", Mutation: coinsAdd(7)})

	events, err := st.PendingEvents(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []eventSummary{
		{UserID: 11, Version: 1, Actor: save.ActorCompanion, Invalidate: true, HolderJobID: "job-a", ChangedPaths: []string{"settings.volume"}},
		{UserID: 11, Version: 2, Actor: save.ActorServer, JobID: "job-a", HolderJobID: "job-a", ChangedPaths: []string{"currencies.coins"}},
		{UserID: 12, Version: 1, Actor: save.ActorServer, JobID: "job-b", ChangedPaths: []string{"currencies.coins"}},
	}
	if diff := cmp.Diff(want, summarize(events)); diff != "" {
		t.Fatalf("pending events (-want +got):\n%s", diff)
	}
	first := events[0]
	if first.EntryID == "" || first.CommittedAt.IsZero() || first.VersionBefore != 0 || first.Kind != "mutation" {
		t.Errorf("first event lacks its identity: %+v", first)
	}
	if len(first.Changes) != 1 || first.Changes[0]["path"] != "settings.volume" || first.Changes[0]["new"] != int64(40) {
		t.Errorf("first event changes = %v, want settings.volume → 40", first.Changes)
	}
	if first.Ops == nil {
		t.Errorf("first event has no ops in its audit payload")
	}

	if err := st.MarkPublished(ctx, events[:2]); err != nil {
		t.Fatal(err)
	}
	rest, err := st.PendingEvents(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[2:], summarize(rest)); diff != "" {
		t.Errorf("pending after marking two (-want +got):\n%s", diff)
	}
}

func TestPendingEventsKeepPlayerVersionOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newOutboxStore(t, store.Options{})
	// Mutations queued together commit in one group, with one commit time.
	const n = 9
	reqs := make([]store.MutationRequest, n)
	for i := range reqs {
		reqs[i] = store.MutationRequest{UserID: 21, Actor: companion, IdempotencyKey: fmt.Sprintf("k-%d", i), Mutation: volumeSet(int64(i))}
	}
	for i, r := range st.ApplyMutations(ctx, reqs) {
		if r.Err != nil {
			t.Fatalf("mutation %d: %v", i, r.Err)
		}
	}
	var got []int64
	for round := 0; round < n; round++ {
		events, err := st.PendingEvents(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			break
		}
		for _, e := range events {
			got = append(got, e.Version)
		}
		if err := st.MarkPublished(ctx, events); err != nil {
			t.Fatal(err)
		}
	}
	want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("versions in publish order (-want +got):\n%s", diff)
	}
}

func TestClaimRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := firestoretest.NewClock(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	st, _ := newOutboxStore(t, store.Options{Now: clock.Now})
	const ttl = 30 * time.Second

	type step struct {
		name      string
		advance   time.Duration
		release   string // holder that releases before the claim
		holder    string
		wantHeld  bool
		wantOwner string
		wantEpoch int64
	}
	steps := []step{
		{name: "free lease is taken", holder: "a", wantHeld: true, wantOwner: "a", wantEpoch: 1},
		{name: "held lease is refused", holder: "b", wantHeld: false, wantOwner: "a", wantEpoch: 1},
		{name: "holder renews", advance: 20 * time.Second, holder: "a", wantHeld: true, wantOwner: "a", wantEpoch: 1},
		{name: "still refused before expiry", advance: 25 * time.Second, holder: "b", wantHeld: false, wantOwner: "a", wantEpoch: 1},
		{name: "expired lease is taken over", advance: 10 * time.Second, holder: "b", wantHeld: true, wantOwner: "b", wantEpoch: 2},
		{name: "release by a non-holder changes nothing", release: "a", holder: "a", wantHeld: false, wantOwner: "b", wantEpoch: 2},
		{name: "released lease is free at once", release: "b", holder: "a", wantHeld: true, wantOwner: "a", wantEpoch: 3},
	}
	// The steps run in order: each starts from the lease the previous left.
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock.Advance(s.advance)
			if s.release != "" {
				if err := st.ReleaseRelay(ctx, s.release); err != nil {
					t.Fatalf("release: %v", err)
				}
			}
			got, err := st.ClaimRelay(ctx, s.holder, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if got.Held != s.wantHeld || got.Holder != s.wantOwner || got.Epoch != s.wantEpoch {
				t.Errorf("got held=%v holder=%q epoch=%d, want held=%v holder=%q epoch=%d",
					got.Held, got.Holder, got.Epoch, s.wantHeld, s.wantOwner, s.wantEpoch)
			}
		})
	}
}

func TestMarkPublishedSkipsErasedEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newOutboxStore(t, store.Options{})
	mustMutate(t, st, store.MutationRequest{UserID: 31, Actor: companion, IdempotencyKey: "e-1", Mutation: volumeSet(10)})
	mustMutate(t, st, store.MutationRequest{UserID: 32, Actor: companion, IdempotencyKey: "e-2", Mutation: volumeSet(20)})
	events, err := st.PendingEvents(ctx, 10)
	if err != nil || len(events) != 2 {
		t.Fatalf("pending = %d events, %v; want 2", len(events), err)
	}
	// Player 31 is erased between the relay's read and its mark.
	gone := events[0]
	if gone.UserID != 31 {
		gone = events[1]
	}
	if _, err := st.ErasePlayer(ctx, []byte("0123456789abcdef"), store.ErasureRequest{UserID: 31, Source: store.ErasureSourceAdmin, Requester: "test", RequestID: "r-1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkPublished(ctx, events); err != nil {
		t.Fatalf("MarkPublished with an erased entry = %v, want nil", err)
	}
	rest, err := st.PendingEvents(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 0 {
		t.Errorf("still pending: %+v", summarize(rest))
	}
}
