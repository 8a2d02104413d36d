package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

func TestListLedgerPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newLinkStore(t)
	const userID = 901
	fan := save.Actor{Kind: save.ActorCompanion, ID: "uid-hist"}
	for i := 1; i <= 5; i++ {
		_, err := st.ApplyMutation(ctx, store.MutationRequest{UserID: userID, Actor: fan, IdempotencyKey: fmt.Sprintf("k%d", i),
			Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(i)}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Another player's history never shows.
	if _, err := st.ApplyMutation(ctx, store.MutationRequest{UserID: userID + 1, Actor: fan, IdempotencyKey: "other",
		Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(9)}}}}); err != nil {
		t.Fatal(err)
	}

	var versions [][]int64
	cursor := ""
	for range 5 {
		page, err := st.ListLedger(ctx, userID, cursor, 2)
		if err != nil {
			t.Fatalf("ListLedger(cursor %q): %v", cursor, err)
		}
		var vs []int64
		for _, e := range page.Entries {
			vs = append(vs, e.Version)
		}
		versions = append(versions, vs)
		cursor = page.NextCursor
		if cursor == "" {
			break
		}
	}
	if diff := cmp.Diff([][]int64{{5, 4}, {3, 2}, {1}}, versions); diff != "" {
		t.Errorf("pages of versions (-want +got):\n%s", diff)
	}

	page, err := st.ListLedger(ctx, userID, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	got := page.Entries[0]
	if got.Actor != fan || got.VersionBefore != 4 || got.Kind != "mutation" || got.CommittedAt.IsZero() {
		t.Errorf("newest entry = %+v, want version 4→5 by %v with a commit time", got, fan)
	}
	if diff := cmp.Diff([]string{"settings.volume"}, got.ChangedPaths); diff != "" {
		t.Errorf("changedPaths (-want +got):\n%s", diff)
	}
	wantOps := []any{map[string]any{"op": "settings.set", "key": "volume", "value": int64(5)}}
	if diff := cmp.Diff(wantOps, got.Ops); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}

	empty, err := st.ListLedger(ctx, 999, "", 0)
	if err != nil || len(empty.Entries) != 0 || empty.NextCursor != "" {
		t.Errorf("unknown player's ledger = %+v, %v; want an empty page", empty, err)
	}
}

func TestListLedgerRefusals(t *testing.T) {
	t.Parallel()
	st, _ := newLinkStore(t)
	tests := []struct {
		name   string
		cursor string
		limit  int
	}{
		{"cursor not base64", "!!!", 10},
		{"cursor not ours", "e30", 10},
		{"negative limit", "", -1},
		{"limit too large", "", store.MaxLedgerPage + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.ListLedger(context.Background(), 1, tt.cursor, tt.limit)
			if got := save.ErrorCode(err); got != save.CodeInvalidArgument {
				t.Errorf("error = %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}
