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

// changeKeys reduces changes to "user@version" for comparison.
func changeKeys(cs []store.Invalidation) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%d@%d", c.UserID, c.Version)
	}
	return out
}

// twoInstances returns two stores over one project, as two instances of
// the service would be; skew shifts the second one's clock.
func twoInstances(t *testing.T, skew time.Duration) (*store.Store, *store.Store) {
	t.Helper()
	project := firestoretest.Project(t)
	a := firestoretest.Dial(t, project)
	b := firestoretest.Dial(t, project)
	cfg := firestoretest.GameConfig(t)
	return store.New(a.Firestore, a.GAPIC, project, cfg, store.Options{}),
		store.New(b.Firestore, b.GAPIC, project, cfg, store.Options{Now: func() time.Time { return time.Now().Add(skew) }})
}

func TestChangesWaitSeesWritesFromAnotherInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := twoInstances(t, 0)
	ch := store.NewChanges(a, store.ChangesOptions{PollInterval: 20 * time.Millisecond})
	mustJoin(t, a, 31, "job-x")
	mustJoin(t, a, 32, "job-y")

	type answer struct {
		page store.ChangesPage
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		p, err := ch.Wait(ctx, "job-x", "", 10*time.Second)
		done <- answer{p, err}
	}()
	time.Sleep(100 * time.Millisecond)
	// Only the companion write to job-x's player concerns job-x: its own
	// write does not, nor does a write to a player job-y holds.
	mustMutate(t, b, store.MutationRequest{UserID: 31, Actor: save.Actor{Kind: save.ActorServer, ID: "universe/1"}, JobID: "job-x", IdempotencyKey: "own", Mutation: coinsAdd(1)})
	mustMutate(t, b, store.MutationRequest{UserID: 32, Actor: companion, IdempotencyKey: "other", Mutation: volumeSet(10)})
	mustMutate(t, b, store.MutationRequest{UserID: 31, Actor: companion, IdempotencyKey: "mine", Mutation: volumeSet(20)})

	var first answer
	select {
	case first = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the long-poll did not return")
	}
	if first.err != nil {
		t.Fatal(first.err)
	}
	got := first.page.Changes
	if len(got) == 0 {
		t.Fatal("the long-poll returned no change")
	}
	// The companion is named by kind only: game servers do not learn its uid.
	want := store.Invalidation{UserID: 31, Version: 2, ChangedPaths: []string{"settings.volume"}, Actor: save.Actor{Kind: save.ActorCompanion}, CommittedAt: got[0].CommittedAt}
	if diff := cmp.Diff([]store.Invalidation{want}, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}

	// The cursor moves past what was returned: nothing new means an empty
	// answer when the (short) wait ends.
	again, err := ch.Wait(ctx, "job-x", first.page.Cursor, 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) != 0 || again.Cursor == "" {
		t.Errorf("second poll = %v cursor %q, want no changes and a cursor", changeKeys(again.Changes), again.Cursor)
	}
	mustMutate(t, b, store.MutationRequest{UserID: 31, Actor: companion, IdempotencyKey: "mine-2", Mutation: volumeSet(30)})
	third, err := ch.Wait(ctx, "job-x", again.Cursor, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"31@3"}, changeKeys(third.Changes)); diff != "" {
		t.Errorf("third poll (-want +got):\n%s", diff)
	}
}

func TestChangesSeesLateCommitStampedBeforeCursor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// b's clock runs 3 s behind: its entries are stamped before entries a
	// committed earlier, as a slow commit on another instance would be.
	a, b := twoInstances(t, -3*time.Second)
	ch := store.NewChanges(a, store.ChangesOptions{PollInterval: 20 * time.Millisecond, Settle: 10 * time.Second})
	mustJoin(t, a, 41, "job-z")
	mustJoin(t, a, 42, "job-z")

	mustMutate(t, a, store.MutationRequest{UserID: 41, Actor: companion, IdempotencyKey: "a-1", Mutation: volumeSet(1)})
	first, err := ch.Wait(ctx, "job-z", "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"41@1"}, changeKeys(first.Changes)); diff != "" {
		t.Fatalf("first poll (-want +got):\n%s", diff)
	}
	late := mustMutate(t, b, store.MutationRequest{UserID: 42, Actor: companion, IdempotencyKey: "b-1", Mutation: volumeSet(2)})
	if !late.CommittedAt.Before(first.Changes[0].CommittedAt) {
		t.Fatalf("the late entry is stamped %v, not before %v: the test does not test anything", late.CommittedAt, first.Changes[0].CommittedAt)
	}
	second, err := ch.Wait(ctx, "job-z", first.Cursor, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"42@1"}, changeKeys(second.Changes)); diff != "" {
		t.Errorf("second poll (-want +got):\n%s", diff)
	}
}

func TestChangesPagesWithoutLossOrRepeat(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newOutboxStore(t, store.Options{})
	ch := store.NewChanges(st, store.ChangesOptions{PollInterval: 10 * time.Millisecond, PageSize: 2})
	mustJoin(t, st, 51, "job-p")
	cursor := ""
	// Start the cursor before the writes.
	if p, err := ch.Wait(ctx, "job-p", cursor, 0); err != nil {
		t.Fatal(err)
	} else {
		cursor = p.Cursor
	}
	for i := range 5 {
		mustMutate(t, st, store.MutationRequest{UserID: 51, Actor: companion, IdempotencyKey: fmt.Sprintf("p-%d", i), Mutation: volumeSet(int64(i))})
	}
	var got []string
	var sizes []int
	for range 5 {
		p, err := ch.Wait(ctx, "job-p", cursor, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		cursor = p.Cursor
		if len(p.Changes) == 0 {
			break
		}
		sizes = append(sizes, len(p.Changes))
		got = append(got, changeKeys(p.Changes)...)
	}
	if diff := cmp.Diff([]string{"51@1", "51@2", "51@3", "51@4", "51@5"}, got); diff != "" {
		t.Errorf("changes over all pages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{2, 2, 1}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}
}

func TestChangesRejectsBadInput(t *testing.T) {
	t.Parallel()
	st, _ := newOutboxStore(t, store.Options{})
	ch := store.NewChanges(st, store.ChangesOptions{})
	tests := []struct {
		name, job, cursor string
	}{
		{"empty job id", "", ""},
		{"job id too long", string(make([]byte, 129)), ""},
		{"cursor not base64", "job", "%%%"},
		{"cursor not ours", "job", "eyJ4IjoxfQ"},
		{"cursor without time", "job", "e30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ch.Wait(context.Background(), tt.job, tt.cursor, 0)
			e, ok := save.AsError(err)
			if !ok || e.Code != save.CodeInvalidArgument {
				t.Errorf("Wait(%q, %q) error = %v, want INVALID_ARGUMENT", tt.job, tt.cursor, err)
			}
		})
	}
}

// TestChangesSameKeyForTwoPlayers sends the same caller's same key to two
// held players (an operator compensating an incident): both changes reach
// the holding server, though their entry ids are equal.
func TestChangesSameKeyForTwoPlayers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newOutboxStore(t, store.Options{})
	ch := store.NewChanges(st, store.ChangesOptions{PollInterval: 10 * time.Millisecond, PageSize: 1})
	mustJoin(t, st, 61, "job-r")
	mustJoin(t, st, 62, "job-r")
	start, err := ch.Wait(ctx, "job-r", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	admin := save.Actor{Kind: save.ActorAdmin, ID: "uid-support"}
	for _, user := range []int64{61, 62} {
		mustMutate(t, st, store.MutationRequest{UserID: user, Actor: admin, IdempotencyKey: "incident-42", Mutation: coinsAdd(10)})
	}
	var got []string
	cursor := start.Cursor
	for range 4 {
		p, err := ch.Wait(ctx, "job-r", cursor, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		cursor = p.Cursor
		got = append(got, changeKeys(p.Changes)...)
	}
	if diff := cmp.Diff([]string{"61@1", "62@1"}, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}
