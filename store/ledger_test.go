package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// entryView is what every reader of a ledger entry reports of it.
type entryView struct {
	EntryID       string
	Version       int64
	VersionBefore int64
	Actor         save.Actor
	ChangedPaths  []string
	CommittedAt   time.Time
}

// TestEveryLedgerReaderSeesTheEntryAsWritten commits one mutation and
// reads its ledger entry back through every reader: the replay, history,
// audit by id and by search, the outbox and the long-poll. Each sees the
// entry the transaction wrote.
func TestEveryLedgerReaderSeesTheEntryAsWritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newOutboxStore(t, store.Options{})
	const userID = 4242424242
	mustJoin(t, st, userID, "job-a")
	expected := int64(0)
	req := store.MutationRequest{UserID: userID, Actor: companion, IdempotencyKey: "every-reader",
		Mutation: save.Mutation{ExpectedVersion: &expected, Reason: "from the settings page",
			Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(30)}, {Kind: save.OpCollectionAdd, Collection: "badges", Element: "gold"}}}}
	res, err := st.ApplyMutation(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	out := res.Outcome
	want := entryView{out.EntryID, out.Version, out.VersionBefore, companion, out.ChangedPaths, out.CommittedAt}

	replayed, err := st.ApplyMutation(ctx, req)
	if err != nil || !replayed.Replayed || string(replayed.Body) != string(res.Body) {
		t.Errorf("replay: %s, replayed %v, %v; want the first answer replayed", replayed.Body, replayed.Replayed, err)
	}

	page, err := st.ListLedger(ctx, userID, "", 0)
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("ListLedger: %+v, %v; want one entry", page, err)
	}
	history := page.Entries[0]
	byID, ok, err := st.LedgerEntryByID(ctx, userID, out.EntryID)
	if err != nil || !ok {
		t.Fatalf("LedgerEntryByID: %v, %v", ok, err)
	}
	found, err := st.SearchLedger(ctx, userID, store.AuditQuery{IdempotencyKey: "every-reader"})
	if err != nil || len(found.Entries) != 1 {
		t.Fatalf("SearchLedger: %+v, %v; want one entry", found, err)
	}
	events, err := st.PendingEvents(ctx, 10)
	if err != nil || len(events) != 1 {
		t.Fatalf("PendingEvents: %+v, %v; want one event", events, err)
	}
	ev := events[0]
	changes, err := store.NewChanges(st, store.ChangesOptions{}).Wait(ctx, "job-a", "", 0)
	if err != nil || len(changes.Changes) != 1 {
		t.Fatalf("Changes.Wait: %+v, %v; want one change", changes, err)
	}
	ch := changes.Changes[0]

	got := map[string]entryView{
		"history":  {history.EntryID, history.Version, history.VersionBefore, history.Actor, history.ChangedPaths, history.CommittedAt},
		"by id":    {byID.EntryID, byID.Version, byID.VersionBefore, byID.Actor, byID.ChangedPaths, byID.CommittedAt},
		"search":   {found.Entries[0].EntryID, found.Entries[0].Version, found.Entries[0].VersionBefore, found.Entries[0].Actor, found.Entries[0].ChangedPaths, found.Entries[0].CommittedAt},
		"outbox":   {ev.EntryID, ev.Version, ev.VersionBefore, ev.Actor, ev.ChangedPaths, ev.CommittedAt},
		"longpoll": {out.EntryID, ch.Version, out.VersionBefore, companion, ch.ChangedPaths, ch.CommittedAt},
	}
	for reader, view := range got {
		if diff := cmp.Diff(want, view); diff != "" {
			t.Errorf("%s (-want +got):\n%s", reader, diff)
		}
	}
	if ch.Actor != (save.Actor{Kind: save.ActorCompanion}) {
		t.Errorf("long-poll actor %+v, want the companion without its uid", ch.Actor)
	}
	if ev.Reason != req.Mutation.Reason || history.Reason != req.Mutation.Reason || byID.Reason != req.Mutation.Reason {
		t.Errorf("reasons: outbox %q, history %q, by id %q; want %q", ev.Reason, history.Reason, byID.Reason, req.Mutation.Reason)
	}
	if byID.IdempotencyKey != "every-reader" || byID.ExpectedVersion == nil || *byID.ExpectedVersion != 0 || byID.Response != string(res.Body) {
		t.Errorf("by id: key %q, expected version %v, response %s; want the request's key and expected version and the answer", byID.IdempotencyKey, byID.ExpectedVersion, byID.Response)
	}
	if !ev.Invalidate || ev.HolderJobID != "job-a" {
		t.Errorf("outbox: invalidate %v holder %q, want the holding server told", ev.Invalidate, ev.HolderJobID)
	}
	wantChanges := make([]map[string]any, len(out.Changes))
	for i, c := range out.Changes {
		wantChanges[i] = map[string]any{"path": c.Path, "old": c.Old, "new": c.New}
	}
	if diff := cmp.Diff(wantChanges, ev.Changes); diff != "" {
		t.Errorf("outbox changes (-want +got):\n%s", diff)
	}
}
