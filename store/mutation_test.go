package store_test

import (
	"context"
	"strings"
	"testing"

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
