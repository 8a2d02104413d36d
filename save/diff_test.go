package save

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stored round-trips changes through JSON, as the ledger returns them.
func stored(t *testing.T, changes []Change) []Change {
	t.Helper()
	raw, err := json.Marshal(changes)
	if err != nil {
		t.Fatal(err)
	}
	var out []Change
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUndoAndRedoWalkThroughVersions(t *testing.T) {
	c := sampleConfig(t)
	v := int64(0)
	mutations := []Mutation{
		{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: 30000}, {Kind: OpCurrencyAdd, Currency: "gems", Amount: 100}, {Kind: OpItemGrant, Item: "wood", Count: 5}}},
		{Ops: []Op{{Kind: OpPurchase, SKU: "starterPack"}, {Kind: OpSettingsSet, Key: "language", Value: "de"}}},
		{Ops: []Op{{Kind: OpPurchase, SKU: "goldenHammer"}, {Kind: OpCollectionAdd, Collection: "pets", Element: "cat"}}},
		{ExpectedVersion: i64(3), Ops: []Op{{Kind: OpLoadoutSet, Slot: "tool", Item: "goldenHammer"}}},
		{Ops: []Op{{Kind: OpItemConsume, Item: "wood", Count: 205}, {Kind: OpCollectionRemove, Collection: "badges", Element: "starter"}}},
	}
	states := []State{c.NewState()}
	var entries [][]Change
	for _, m := range mutations {
		a := mustApply(t, c, states[len(states)-1], v, m, server)
		v++
		states = append(states, a.State)
		entries = append(entries, stored(t, a.Changes))
	}

	raw := states[len(states)-1].Encode()
	for i := len(entries) - 1; i >= 0; i-- {
		if err := UndoChanges(raw, entries[i]); err != nil {
			t.Fatalf("UndoChanges(entry %d): %v", i+1, err)
		}
		got, err := c.DecodeState(raw)
		if err != nil {
			t.Fatalf("DecodeState after undoing entry %d: %v", i+1, err)
		}
		if diff := cmp.Diff(states[i].Encode(), got.Encode()); diff != "" {
			t.Errorf("save at version %d (-want +got):\n%s", i, diff)
		}
	}

	raw = c.NewState().Encode()
	for i, ch := range entries {
		if err := RedoChanges(raw, ch); err != nil {
			t.Fatalf("RedoChanges(entry %d): %v", i+1, err)
		}
	}
	got, err := c.DecodeState(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(states[len(states)-1].Encode(), got.Encode()); diff != "" {
		t.Errorf("save redone to the last version (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff(stored(t, entries[1]), stored(t, Diff(states[1], states[2]))); diff != "" {
		t.Errorf("Diff(v1, v2) differs from the entry's changes (-want +got):\n%s", diff)
	}
}

func TestUndoChangesPaths(t *testing.T) {
	// A collection change names the collection and the element.
	if err := UndoChanges(map[string]any{}, []Change{{Path: "collections.badges", Old: int64(1), New: int64(2)}}); ErrorCode(err) != CodeInvalidArgument {
		t.Fatalf("UndoChanges(collections.badges) = %v, want INVALID_ARGUMENT", err)
	}
	// A path through a value that is not a map cannot be set.
	if err := UndoChanges(map[string]any{"wallet": int64(3)}, []Change{{Path: "wallet.coins", Old: int64(1)}}); ErrorCode(err) != CodeInvalidArgument {
		t.Fatalf("UndoChanges(wallet.coins) through a number = %v, want INVALID_ARGUMENT", err)
	}
	// Paths of an older schema (recorded by the entry that migrated the
	// save) are set in the tree as they were.
	raw := map[string]any{"currencies": map[string]any{"coins": int64(2)}}
	changes := []Change{{Path: "coins", Old: int64(2), New: nil}, {Path: "currencies", Old: nil, New: map[string]any{"coins": int64(2)}}}
	if err := UndoChanges(raw, changes); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"coins": int64(2)}, raw); diff != "" {
		t.Errorf("undoing a migration's move (-want +got):\n%s", diff)
	}
	raw = map[string]any{}
	if err := UndoChanges(raw, []Change{{Path: "schemaVersion", Old: int64(2), New: int64(3)}}); err != nil || len(raw) != 0 {
		t.Fatalf("UndoChanges(schemaVersion) = %v, raw %v; want it skipped", err, raw)
	}
}

func TestPlanRefund(t *testing.T) {
	c := sampleConfig(t)
	start := c.NewState()
	start.Currencies["gems"] = 100
	bought := mustApply(t, c, start, 1, Mutation{Ops: []Op{{Kind: OpPurchase, SKU: "starterPack"}}}, server)
	purchase := stored(t, bought.Changes)

	spend := func(m Mutation) State {
		return mustApply(t, c, bought.State, 2, m, server).State
	}
	tests := []struct {
		name    string
		now     State
		wantOps []Op
		wantLow []Shortfall
	}{
		{
			name: "everything still held",
			now:  bought.State,
			wantOps: []Op{
				{Kind: OpCollectionRemove, Collection: "badges", Element: "starter"},
				{Kind: OpCurrencyAdd, Currency: "coins", Amount: -5000},
				{Kind: OpCurrencyAdd, Currency: "gems", Amount: 50},
				{Kind: OpItemConsume, Item: "wood", Count: 200},
			},
			wantLow: []Shortfall{},
		},
		{
			name: "grants partly spent",
			now: spend(Mutation{Ops: []Op{
				{Kind: OpItemConsume, Item: "wood", Count: 150},
				{Kind: OpCurrencyAdd, Currency: "coins", Amount: -5100},
				{Kind: OpCollectionRemove, Collection: "badges", Element: "starter"},
			}}),
			wantOps: []Op{
				{Kind: OpCurrencyAdd, Currency: "coins", Amount: -150},
				{Kind: OpCurrencyAdd, Currency: "gems", Amount: 50},
				{Kind: OpItemConsume, Item: "wood", Count: 50},
			},
			wantLow: []Shortfall{
				{Path: "collections.badges.starter", Granted: 1},
				{Path: "currencies.coins", Granted: 5000, Recovered: 150},
				{Path: "items.wood", Granted: 200, Recovered: 50},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := c.PlanRefund(purchase, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantOps, plan.Ops); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLow, plan.Unrecovered); diff != "" {
				t.Errorf("unrecovered (-want +got):\n%s", diff)
			}
			refunded := mustApply(t, c, tt.now, 3, Mutation{Ops: plan.Ops}, server)
			if diff := cmp.Diff(tt.wantLow, RefundShortfall(purchase, stored(t, refunded.Changes))); diff != "" {
				t.Errorf("RefundShortfall from the committed refund (-want +got):\n%s", diff)
			}
			if got := refunded.State.Currencies["gems"]; got != 100 {
				t.Errorf("gems after refund = %d, want the 100 held before the purchase", got)
			}
		})
	}
}

func TestPlanRefundRefusals(t *testing.T) {
	c := sampleConfig(t)
	tests := []struct {
		name   string
		change []Change
		now    State
		code   Code
	}{
		{"settings only", []Change{{Path: "settings.language", Old: "en", New: "de"}}, c.NewState(), CodeInvalidArgument},
		{"free grant all used", []Change{{Path: "items.wood", Old: nil, New: int64(5)}}, c.NewState(), CodeInsufficientFunds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.PlanRefund(tt.change, tt.now)
			if got := ErrorCode(err); got != tt.code {
				t.Fatalf("PlanRefund = %v, want %s", err, tt.code)
			}
		})
	}
}

func TestChangeInt(t *testing.T) {
	tests := []struct {
		in     any
		want   int64
		wantOK bool
	}{
		{nil, 0, true},
		{int64(7), 7, true},
		{float64(-3), -3, true},
		{json.Number("12"), 12, true},
		{1.5, 0, false},
		{"7", 0, false},
	}
	for _, tt := range tests {
		got, ok := ChangeInt(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ChangeInt(%#v) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestMigrationChangesUndo diffs a save before and after a migration and
// undoes the changes on the migrated save: the result is the old save,
// paths of the older schema included.
func TestMigrationChangesUndo(t *testing.T) {
	c := sampleConfig(t)
	v1 := map[string]any{"coins": int64(70), "inventory": map[string]any{"pirateHat": int64(1)}, "musicOn": false}
	migrated, err := c.Migrate(v1, 1)
	if err != nil {
		t.Fatal(err)
	}
	changes := DiffTrees(v1, migrated)
	if len(changes) == 0 {
		t.Fatal("no changes recorded for a migration that moves fields")
	}
	back := CloneTree(migrated)
	if err := UndoChanges(back, changes); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1, back); diff != "" {
		t.Errorf("undoing the migration's changes (-v1 +got):\n%s", diff)
	}
	forward := CloneTree(v1)
	if err := RedoChanges(forward, changes); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(migrated, forward); diff != "" {
		t.Errorf("redoing the migration's changes (-migrated +got):\n%s", diff)
	}
}
