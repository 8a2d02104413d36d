package store_test

import (
	"os"
	"slices"
	"strings"

	"context"
	"fmt"
	"github.com/savesync/savesync/internal/firestoretest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// ledgerSums checks the ledger invariants of a player: the version equals
// the number of entries, and each balance equals its start plus the sum of
// the entries' recorded deltas.
func ledgerSums(t *testing.T, st *store.Store, userID int64) {
	t.Helper()
	ctx := context.Background()
	p, err := st.GetPlayer(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	var entries []store.AuditEntry
	q := store.AuditQuery{Limit: store.MaxLedgerPage}
	for range 100 {
		page, err := st.SearchLedger(ctx, userID, q)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, page.Entries...)
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	if int64(len(entries)) != p.Version {
		t.Errorf("version %d but %d ledger entries", p.Version, len(entries))
	}
	cfg := firestoretest.GameConfig(t)
	sums := map[string]int64{}
	for id, b := range cfg.Currencies {
		sums["currencies."+id] = b.Start
	}
	for _, e := range entries {
		for _, c := range e.Changes.([]any) {
			m := c.(map[string]any)
			path, _ := m["path"].(string)
			if _, ok := sums[path]; !ok {
				continue
			}
			oldN, _ := save.ChangeInt(m["old"])
			newN, _ := save.ChangeInt(m["new"])
			sums[path] += newN - oldN
		}
	}
	cur := p.Save["currencies"].(map[string]any)
	for id := range cfg.Currencies {
		got, _ := save.ChangeInt(cur[id])
		if got != sums["currencies."+id] {
			t.Errorf("currency %s = %d, but start plus ledger deltas = %d", id, got, sums["currencies."+id])
		}
	}
}

func TestSaveAtDiffAndRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clock := newAuditStore(t)
	const userID = 7101
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	steps := [][]save.Op{
		{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 400}, {Kind: save.OpItemGrant, Item: "sword", Count: 1}},
		{{Kind: save.OpPurchase, SKU: "starter"}, {Kind: save.OpCollectionAdd, Collection: "badges", Element: "first"}},
		{{Kind: save.OpSettingsSet, Key: "volume", Value: int64(20)}, {Kind: save.OpItemConsume, Item: "potion", Count: 1}},
		{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: -300}, {Kind: save.OpCollectionRemove, Collection: "badges", Element: "first"}},
	}
	seen := []map[string]any{}
	p, err := st.GetPlayer(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, p.Save)
	for i, ops := range steps {
		apply(t, st, userID, server, fmt.Sprintf("k%d", i), ops...)
		clock.Advance(3600e9)
		p, err := st.GetPlayer(ctx, userID)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, p.Save)
	}
	for v := range seen {
		at, err := st.SaveAt(ctx, userID, int64(v))
		if err != nil {
			t.Fatalf("SaveAt(%d): %v", v, err)
		}
		if diff := cmp.Diff(seen[v], at.Save); diff != "" {
			t.Errorf("SaveAt(%d) (-want +got):\n%s", v, diff)
		}
		if at.CurrentVersion != 4 || (v > 0) != (at.CommittedAt != nil) {
			t.Errorf("SaveAt(%d) = current %d, committedAt %v", v, at.CurrentVersion, at.CommittedAt)
		}
	}

	d, err := st.DiffVersions(ctx, userID, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range d.Changes {
		paths = append(paths, c.Path)
	}
	if diff := cmp.Diff([]string{"collections.badges.first", "currencies.coins", "items.potion", "settings.volume"}, paths); diff != "" {
		t.Errorf("DiffVersions(1, 3) paths (-want +got):\n%s", diff)
	}

	if _, err := st.SaveAt(ctx, userID, 5); save.ErrorCode(err) != save.CodeNotFound {
		t.Errorf("SaveAt(5) = %v, want NOT_FOUND", err)
	}

	op := save.Actor{Kind: save.ActorAdmin, ID: "uid-op"}
	req := store.RestoreRequest{UserID: userID, Version: 2, Actor: op, IdempotencyKey: "restore-1", Reason: "items vanished [ticket T-1]"}
	res, err := st.RestoreVersion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome.Version != 5 || res.Replayed {
		t.Fatalf("restore outcome = %+v, want version 5", res.Outcome)
	}
	undid := map[string]bool{}
	for _, c := range res.Outcome.Changes {
		undid[c.Path] = true
	}
	for _, path := range []string{"currencies.coins", "items.potion", "settings.volume", "collections.badges.first"} {
		if !undid[path] {
			t.Errorf("restore changes %v do not list %s", res.Outcome.Changes, path)
		}
	}
	now, err := st.GetPlayer(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	wantView := seen[2]
	if diff := cmp.Diff(wantView, now.Save); diff != "" {
		t.Errorf("save after restore (-want +got):\n%s", diff)
	}
	ledgerSums(t, st, userID)

	again, err := st.RestoreVersion(ctx, req)
	if err != nil || !again.Replayed || string(again.Body) != string(res.Body) {
		t.Errorf("replayed restore = %+v, %v; want the first body replayed", again, err)
	}
	req.Reason = "another reason"
	if _, err := st.RestoreVersion(ctx, req); save.ErrorCode(err) != save.CodeIdempotencyKeyReused {
		t.Errorf("same key, other restore = %v, want IDEMPOTENCY_KEY_REUSED", err)
	}
	ledgerSums(t, st, userID)
}

func TestRefundPurchase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newAuditStore(t)
	const userID = 7201
	fan := save.Actor{Kind: save.ActorCompanion, ID: "uid-f"}
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	bought := apply(t, st, userID, fan, "buy", save.Op{Kind: save.OpPurchase, SKU: "starter"})
	apply(t, st, userID, server, "drink", save.Op{Kind: save.OpItemConsume, Item: "potion", Count: 1})
	settings := apply(t, st, userID, fan, "vol", save.Op{Kind: save.OpSettingsSet, Key: "volume", Value: int64(5)})

	op := save.Actor{Kind: save.ActorAdmin, ID: "uid-op"}
	req := store.RefundRequest{UserID: userID, EntryID: bought.EntryID, Actor: op, IdempotencyKey: "refund-1", Reason: "double charge [ticket T-2]"}
	res, err := st.RefundPurchase(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []save.Shortfall{{Path: "items.potion", Granted: 2, Recovered: 1}}
	if diff := cmp.Diff(want, res.Unrecovered); diff != "" {
		t.Errorf("unrecovered (-want +got):\n%s", diff)
	}
	p, err := st.GetPlayer(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	if coins, _ := save.ChangeInt(p.Save["currencies"].(map[string]any)["coins"]); coins != 100 {
		t.Errorf("coins after refund = %d, want the 100 held before the purchase", coins)
	}
	if items := p.Save["items"].(map[string]any); len(items) != 0 {
		t.Errorf("items after refund = %v, want none", items)
	}

	again, err := st.RefundPurchase(ctx, req)
	if err != nil || !again.Replayed || string(again.Body) != string(res.Body) {
		t.Fatalf("replayed refund = %+v, %v; want the first body replayed", again, err)
	}
	if diff := cmp.Diff(want, again.Unrecovered); diff != "" {
		t.Errorf("replayed unrecovered (-want +got):\n%s", diff)
	}
	ledgerSums(t, st, userID)

	// Another operator, or the same one under a new key, cannot refund the
	// same purchase a second time.
	for _, second := range []store.RefundRequest{
		{UserID: userID, EntryID: bought.EntryID, Actor: save.Actor{Kind: save.ActorAdmin, ID: "uid-other"}, IdempotencyKey: "refund-9", Reason: "customer wrote again [ticket T-3]"},
		{UserID: userID, EntryID: bought.EntryID, Actor: op, IdempotencyKey: "refund-2", Reason: "double charge [ticket T-2]"},
	} {
		_, err := st.RefundPurchase(ctx, second)
		if save.ErrorCode(err) != save.CodeAlreadyApplied {
			t.Errorf("second refund by %s under %s = %v, want ALREADY_APPLIED", second.Actor.ID, second.IdempotencyKey, err)
		}
	}
	if p, err := st.GetPlayer(ctx, userID); err != nil {
		t.Fatal(err)
	} else if coins, _ := save.ChangeInt(p.Save["currencies"].(map[string]any)["coins"]); coins != 100 {
		t.Errorf("coins after refused second refunds = %d, want 100", coins)
	}
	ledgerSums(t, st, userID)

	tests := []struct {
		name  string
		entry string
		code  save.Code
	}{
		{"not a purchase", settings.EntryID, save.CodeInvalidArgument},
		{"unknown entry", "0000000000000000000000000000000000000000", save.CodeNotFound},
		{"malformed id", "../x", save.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.RefundPurchase(ctx, store.RefundRequest{UserID: userID, EntryID: tt.entry, Actor: op, IdempotencyKey: "r-" + tt.name, Reason: "x"})
			if save.ErrorCode(err) != tt.code {
				t.Fatalf("RefundPurchase(%s) = %v, want %s", tt.entry, err, tt.code)
			}
		})
	}
}

// TestTimeTravelAcrossAMigration writes two versions under schema 2, then
// one under schema 3 (which migrates the save and records what the
// migration changed): every version is still shown, in today's schema.
func TestTimeTravelAcrossAMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data, err := os.ReadFile("../internal/firestoretest/game.json")
	if err != nil {
		t.Fatal(err)
	}
	v2json := strings.Replace(string(data), `"schemaVersion": 3`, `"schemaVersion": 2`, 1)
	v2json = strings.Replace(v2json, `"music": {"type": "bool", "default": true},`, ``, 1)
	v2json = v2json[:strings.Index(v2json, `    {"from": 2`)] + "  ]\n}\n"
	v2json = strings.Replace(v2json, `"to": "currencies.coins"}}]},`, `"to": "currencies.coins"}}]}`, 1)
	cfg2, err := save.ParseConfig([]byte(v2json))
	if err != nil {
		t.Fatalf("schema 2 config: %v", err)
	}
	// Schema 3 renames the xp stat: a migration that is not idempotent,
	// so walking back must know which schema each version was in.
	v3json := strings.Replace(string(data), `"xp": {`, `"experience": {`, 1)
	v3json = strings.Replace(v3json, `{"from": 2, "steps": [`, `{"from": 2, "steps": [
      {"renameKey": {"in": "stats", "from": "xp", "to": "experience"}},`, 1)
	cfg3, err := save.ParseConfig([]byte(v3json))
	if err != nil {
		t.Fatalf("schema 3 config: %v", err)
	}
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	old := store.New(c.Firestore, c.GAPIC, project, cfg2, store.Options{})
	now := store.New(c.Firestore, c.GAPIC, project, cfg3, store.Options{})
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	add := func(st *store.Store, key, stat string, n int64) {
		t.Helper()
		if _, err := st.ApplyMutation(ctx, store.MutationRequest{UserID: 9301, Actor: server, IdempotencyKey: key,
			Mutation: save.Mutation{Ops: []save.Op{{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: n}, {Kind: save.OpStatAdd, Stat: stat, Amount: n}}}}); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	add(old, "v1", "xp", 5)
	add(old, "v2", "xp", 10)
	add(now, "v3", "experience", 1) // migrates the save from schema 2 to 3

	entry, ok, err := now.LedgerEntryByID(ctx, 9301, store.EntryID(server, "v3"))
	if err != nil || !ok {
		t.Fatalf("entry v3: %v %v", ok, err)
	}
	var recorded []string
	for _, ch := range entry.Changes.([]any) {
		recorded = append(recorded, ch.(map[string]any)["path"].(string))
	}
	if !slices.Contains(recorded, "settings.music") || !slices.Contains(recorded, "stats.xp") || !slices.Contains(recorded, "schemaVersion") {
		t.Errorf("the migrating entry records %v, want the schema change, settings.music and stats.xp", recorded)
	}
	for v, coins := range map[int64]int64{0: 100, 1: 105, 2: 115, 3: 116} {
		got, err := now.SaveAt(ctx, 9301, v)
		if err != nil {
			t.Errorf("SaveAt(%d): %v", v, err)
			continue
		}
		if n, _ := save.ChangeInt(got.Save["currencies"].(map[string]any)["coins"]); n != coins {
			t.Errorf("SaveAt(%d) coins = %d, want %d", v, n, coins)
		}
		if n, _ := save.ChangeInt(got.Save["stats"].(map[string]any)["experience"]); n != coins-100 {
			t.Errorf("SaveAt(%d) experience = %d, want %d (the xp of then, renamed)", v, n, coins-100)
		}
		if got.Save["settings"].(map[string]any)["music"] != true {
			t.Errorf("SaveAt(%d) is not shown in today's schema: settings %v", v, got.Save["settings"])
		}
	}
}

// TestRestoreSettlesRefunds checks that a restore to before a purchase and a
// refund of that purchase never both pay its price back, in either order.
func TestRestoreSettlesRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newAuditStore(t)
	fan := save.Actor{Kind: save.ActorCompanion, ID: "uid-f"}
	op := save.Actor{Kind: save.ActorAdmin, ID: "uid-op"}
	coins := func(userID int64) int64 {
		t.Helper()
		p, err := st.GetPlayer(ctx, userID)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := save.ChangeInt(p.Save["currencies"].(map[string]any)["coins"])
		return n
	}

	// Restore first: the later refund is refused.
	bought := apply(t, st, 7301, fan, "buy", save.Op{Kind: save.OpPurchase, SKU: "starter"})
	if _, err := st.RestoreVersion(ctx, store.RestoreRequest{UserID: 7301, Version: 0, Actor: op, IdempotencyKey: "restore-1", Reason: "[ticket T-7]"}); err != nil {
		t.Fatal(err)
	}
	_, err := st.RefundPurchase(ctx, store.RefundRequest{UserID: 7301, EntryID: bought.EntryID, Actor: op, IdempotencyKey: "refund-1", Reason: "[ticket T-8]"})
	if save.ErrorCode(err) != save.CodeAlreadyApplied {
		t.Errorf("refund after a restore that undid the purchase = %v, want ALREADY_APPLIED", err)
	}
	if got := coins(7301); got != 100 {
		t.Errorf("coins = %d, want the 100 from before the purchase, paid back once", got)
	}
	ledgerSums(t, st, 7301)

	// Refund first: the restore still applies (it sets the save back).
	bought = apply(t, st, 7302, fan, "buy", save.Op{Kind: save.OpPurchase, SKU: "starter"})
	if _, err := st.RefundPurchase(ctx, store.RefundRequest{UserID: 7302, EntryID: bought.EntryID, Actor: op, IdempotencyKey: "refund-2", Reason: "[ticket T-9]"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RestoreVersion(ctx, store.RestoreRequest{UserID: 7302, Version: 0, Actor: op, IdempotencyKey: "restore-2", Reason: "[ticket T-10]"}); err != nil {
		t.Errorf("restore after a refund: %v, want it applied", err)
	}
	if got := coins(7302); got != 100 {
		t.Errorf("coins = %d, want 100", got)
	}
	ledgerSums(t, st, 7302)
}
