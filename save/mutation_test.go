package save

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeMutation(t *testing.T) {
	body := `{
		"expectedVersion": 7,
		"reason": "refund",
		"ops": [
			{"op": "currency.add", "currency": "coins", "amount": -25},
			{"op": "settings.set", "key": "volume", "value": 40},
			{"op": "settings.set", "key": "music", "value": false},
			{"op": "inventory.swap", "remove": {"wood": 10}, "add": {"steel": 1}},
			{"op": "collection.remove", "collection": "pets", "element": "cat", "observedVersion": 6},
			{"op": "save.replace", "save": {"currencies": {"coins": 5, "gems": 1.5}}}
		]
	}`
	got, err := DecodeMutation([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := Mutation{
		ExpectedVersion: i64(7),
		Reason:          "refund",
		Ops: []Op{
			{Kind: OpCurrencyAdd, Currency: "coins", Amount: -25},
			{Kind: OpSettingsSet, Key: "volume", Value: int64(40)},
			{Kind: OpSettingsSet, Key: "music", Value: false},
			{Kind: OpInventorySwap, Remove: map[string]int64{"wood": 10}, Add: map[string]int64{"steel": 1}},
			{Kind: OpCollectionRemove, Collection: "pets", Element: "cat", ObservedVersion: 6},
			{Kind: OpSaveReplace, Save: map[string]any{"currencies": map[string]any{"coins": int64(5), "gems": 1.5}}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DecodeMutation (-want +got):\n%s", diff)
	}
}

func TestDecodeMutationErrors(t *testing.T) {
	tests := []struct {
		name, body, field string
	}{
		{"unknown top-level field", `{"ops":[],"idempotencyKey":"k"}`, "idempotencyKey"},
		{"client-sent price", `{"ops":[{"op":"purchase","sku":"goldenHammer","price":{"coins":1}}]}`, "ops[0].price"},
		{"client-sent grants", `{"ops":[{"op":"purchase","sku":"goldenHammer","grants":[]}]}`, "ops[0].grants"},
		{"amount as string", `{"ops":[{"op":"currency.add","currency":"coins","amount":"5"}]}`, "ops[0].amount"},
		{"amount overflows int64", `{"ops":[{"op":"currency.add","currency":"coins","amount":9223372036854775808}]}`, "ops[0].amount"},
		{"amount overflows as float", `{"ops":[{"op":"currency.add","currency":"coins","amount":1e19}]}`, "ops[0].amount"},
		{"fractional count", `{"ops":[{"op":"item.grant","item":"wood","count":1.5}]}`, "ops[0].count"},
		{"third op wrong type", `{"ops":[{"op":"xp.add","amount":1},{"op":"xp.add","amount":1},{"op":"xp.add","amount":true}]}`, "ops[2].amount"},
		{"op not an object", `{"ops":["currency.add"]}`, "ops[0]"},
		{"ops missing", `{"expectedVersion":1}`, "ops"},
		{"ops not a list", `{"ops":{}}`, "ops"},
		{"expectedVersion as string", `{"expectedVersion":"3","ops":[]}`, "expectedVersion"},
		{"swap count wrong type", `{"ops":[{"op":"inventory.swap","remove":{"wood":"x"}}]}`, "ops[0].remove.wood"},
		{"save not an object", `{"ops":[{"op":"save.replace","save":[1]}]}`, "ops[0].save"},
		{"duplicate key", `{"ops":[{"op":"xp.add","amount":1,"amount":1000}]}`, "ops[0].amount"},
		{"body not an object", `[]`, ""},
		{"trailing data", `{"ops":[]}{"ops":[]}`, ""},
		{"truncated", `{"ops":[`, ""},
		{"empty body", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMutation([]byte(tt.body))
			wantError(t, err, CodeInvalidArgument, tt.field)
		})
	}
}

// validOps has one valid op of every kind for the sample config.
func validOps() map[string]Op {
	return map[string]Op{
		OpCurrencyAdd:      {Kind: OpCurrencyAdd, Currency: "coins", Amount: 5},
		OpStatAdd:          {Kind: OpStatAdd, Stat: "rebirths", Amount: 1},
		OpXPAdd:            {Kind: OpXPAdd, Amount: 10},
		OpItemGrant:        {Kind: OpItemGrant, Item: "wood", Count: 3},
		OpItemConsume:      {Kind: OpItemConsume, Item: "wood", Count: 1},
		OpLoadoutSet:       {Kind: OpLoadoutSet, Slot: "hat", Item: ""},
		OpInventorySwap:    {Kind: OpInventorySwap, Remove: map[string]int64{"wood": 1}, Add: map[string]int64{"steel": 1}},
		OpSaveReplace:      {Kind: OpSaveReplace, Save: map[string]any{}},
		OpSettingsSet:      {Kind: OpSettingsSet, Key: "music", Value: false},
		OpCollectionAdd:    {Kind: OpCollectionAdd, Collection: "wishlist", Element: "b"},
		OpCollectionRemove: {Kind: OpCollectionRemove, Collection: "wishlist", Element: "b", ObservedVersion: 1},
		OpPurchase:         {Kind: OpPurchase, SKU: "speedPotions"},
	}
}

func TestPermissions(t *testing.T) {
	c := sampleConfig(t)
	companionMay := map[string]bool{OpPurchase: true, OpSettingsSet: true, OpCollectionAdd: true, OpCollectionRemove: true, OpLoadoutSet: true}
	for _, kind := range []ActorKind{ActorServer, ActorCompanion, ActorAdmin, ActorSystem} {
		for _, opKind := range OpKinds() {
			t.Run(fmt.Sprintf("%s/%s", kind, opKind), func(t *testing.T) {
				m := Mutation{ExpectedVersion: i64(0), Ops: []Op{validOps()[opKind]}}
				err := c.CheckMutation(m, kind)
				if kind == ActorCompanion && !companionMay[opKind] {
					wantError(t, err, CodePermissionDenied, "ops[0].op")
					if e, _ := AsError(err); e.Details["op"] != opKind {
						t.Errorf("details.op = %v, want %s", e.Details["op"], opKind)
					}
					return
				}
				if err != nil {
					t.Errorf("CheckMutation: %v", err)
				}
			})
		}
	}
	t.Run("unknown actor kind", func(t *testing.T) {
		err := c.CheckMutation(Mutation{Ops: []Op{validOps()[OpXPAdd]}}, "robot")
		wantError(t, err, CodePermissionDenied, "")
	})
}

func TestCheckMutationErrors(t *testing.T) {
	c := sampleConfig(t)
	many := make([]Op, 51)
	for i := range many {
		many[i] = validOps()[OpXPAdd]
	}
	tests := []struct {
		name  string
		m     Mutation
		code  Code
		field string
	}{
		{"no ops", Mutation{}, CodeInvalidArgument, "ops"},
		{"too many ops", Mutation{Ops: many}, CodeLimitExceeded, "ops"},
		{"unknown op", Mutation{Ops: []Op{{Kind: "currency.set"}}}, CodeInvalidArgument, "ops[0].op"},
		{"unknown currency", Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "robux", Amount: 1}}}, CodeInvalidArgument, "ops[0].currency"},
		{"missing currency", Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Amount: 1}}}, CodeInvalidArgument, "ops[0].currency"},
		{"zero amount", Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins"}}}, CodeInvalidArgument, "ops[0].amount"},
		{"field of another op", Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: 1, Item: "wood"}}}, CodeInvalidArgument, "ops[0].item"},
		{"unknown stat", Mutation{Ops: []Op{{Kind: OpStatAdd, Stat: "mana", Amount: 1}}}, CodeInvalidArgument, "ops[0].stat"},
		{"xp.add naming a stat", Mutation{Ops: []Op{{Kind: OpXPAdd, Stat: "level", Amount: 1}}}, CodeInvalidArgument, "ops[0].stat"},
		{"zero count", Mutation{Ops: []Op{{Kind: OpItemGrant, Item: "wood"}}}, CodeInvalidArgument, "ops[0].count"},
		{"negative count", Mutation{Ops: []Op{{Kind: OpItemConsume, Item: "wood", Count: -1}}}, CodeInvalidArgument, "ops[0].count"},
		{"unknown item", Mutation{Ops: []Op{{Kind: OpItemGrant, Item: "crown", Count: 1}}}, CodeInvalidArgument, "ops[0].item"},
		{"unknown slot", Mutation{ExpectedVersion: i64(0), Ops: []Op{{Kind: OpLoadoutSet, Slot: "cape"}}}, CodeInvalidArgument, "ops[0].slot"},
		{"slot refuses item", Mutation{ExpectedVersion: i64(0), Ops: []Op{{Kind: OpLoadoutSet, Slot: "hat", Item: "wood"}}}, CodeInvalidArgument, "ops[0].item"},
		{"empty swap", Mutation{ExpectedVersion: i64(0), Ops: []Op{{Kind: OpInventorySwap}}}, CodeInvalidArgument, "ops[0].remove"},
		{"swap unknown item", Mutation{ExpectedVersion: i64(0), Ops: []Op{{Kind: OpInventorySwap, Add: map[string]int64{"crown": 1}}}}, CodeInvalidArgument, "ops[0].add.crown"},
		{"swap zero count", Mutation{ExpectedVersion: i64(0), Ops: []Op{{Kind: OpInventorySwap, Remove: map[string]int64{"wood": 0}}}}, CodeInvalidArgument, "ops[0].remove.wood"},
		{"replace without save", Mutation{ExpectedVersion: i64(0), Ops: []Op{{Kind: OpSaveReplace}}}, CodeInvalidArgument, "ops[0].save"},
		{"unknown setting", Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "shadows", Value: true}}}, CodeInvalidArgument, "ops[0].key"},
		{"setting without value", Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "music"}}}, CodeInvalidArgument, "ops[0].value"},
		{"setting wrong type", Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "volume", Value: "loud"}}}, CodeInvalidArgument, "ops[0].value"},
		{"setting above max", Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "volume", Value: int64(101)}}}, CodeInvalidArgument, "ops[0].value"},
		{"setting fractional int", Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "volume", Value: 5.5}}}, CodeInvalidArgument, "ops[0].value"},
		{"setting outside enum", Mutation{Ops: []Op{{Kind: OpSettingsSet, Key: "graphicsQuality", Value: "ultra"}}}, CodeInvalidArgument, "ops[0].value"},
		{"unknown collection", Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "hats", Element: "x"}}}, CodeInvalidArgument, "ops[0].collection"},
		{"empty element", Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "pets"}}}, CodeInvalidArgument, "ops[0].element"},
		{"long element", Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "pets", Element: strings.Repeat("x", 33)}}}, CodeInvalidArgument, "ops[0].element"},
		{"negative observedVersion", Mutation{Ops: []Op{{Kind: OpCollectionRemove, Collection: "pets", Element: "x", ObservedVersion: -1}}}, CodeInvalidArgument, "ops[0].observedVersion"},
		{"unknown SKU", Mutation{Ops: []Op{{Kind: OpPurchase, SKU: "freeGems"}}}, CodeNotFound, "ops[0].sku"},
		{"purchase with amount", Mutation{Ops: []Op{{Kind: OpPurchase, SKU: "goldenHammer", Amount: 1}}}, CodeInvalidArgument, "ops[0].amount"},
		{"versioned op without expectedVersion", Mutation{Ops: []Op{validOps()[OpXPAdd], validOps()[OpLoadoutSet]}}, CodeInvalidArgument, "expectedVersion"},
		{"negative expectedVersion", Mutation{ExpectedVersion: i64(-1), Ops: []Op{validOps()[OpXPAdd]}}, CodeInvalidArgument, "expectedVersion"},
		{"reason too long", Mutation{Reason: strings.Repeat("r", 1001), Ops: []Op{validOps()[OpXPAdd]}}, CodeInvalidArgument, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.CheckMutation(tt.m, ActorServer)
			wantError(t, err, tt.code, tt.field)
			// Apply rejects the same way and never touches the state.
			st := c.NewState()
			_, err = c.Apply(st, 0, tt.m, server)
			wantError(t, err, tt.code, tt.field)
			if diff := cmp.Diff(c.NewState(), st); diff != "" {
				t.Errorf("state changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyOps(t *testing.T) {
	c := sampleConfig(t)
	tests := []struct {
		name    string
		setup   func(s *State)
		ops     []Op
		actor   Actor
		want    func(s *State)
		changes []Change
	}{
		{
			name:    "currency.add credit",
			ops:     []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: 750}},
			want:    func(s *State) { s.Currencies["coins"] = 1000 },
			changes: []Change{{Path: "currencies.coins", Old: int64(250), New: int64(1000)}},
		},
		{
			name:  "currency.add spend to the floor",
			ops:   []Op{{Kind: OpCurrencyAdd, Currency: "gems", Amount: -10}},
			want:  func(s *State) { s.Currencies["gems"] = 0 },
			actor: admin,
		},
		{
			name:  "stat.add and xp.add",
			ops:   []Op{{Kind: OpStatAdd, Stat: "level", Amount: 4}, {Kind: OpXPAdd, Amount: 1200}, {Kind: OpXPAdd, Amount: -200}},
			want:  func(s *State) { s.Stats["level"], s.Stats["xp"] = 5, 1000 },
			actor: system,
		},
		{
			name:    "item.grant stacks and unique",
			ops:     []Op{{Kind: OpItemGrant, Item: "wood", Count: 10}, {Kind: OpItemGrant, Item: "wood", Count: 5}, {Kind: OpItemGrant, Item: "cargoCrane", Count: 1}},
			want:    func(s *State) { s.Items["wood"], s.Items["cargoCrane"] = 15, 1 },
			changes: []Change{{Path: "items.cargoCrane", Old: nil, New: int64(1)}, {Path: "items.wood", Old: nil, New: int64(15)}},
		},
		{
			name:    "item.consume to zero deletes the count",
			setup:   func(s *State) { s.Items["wood"] = 4 },
			ops:     []Op{{Kind: OpItemConsume, Item: "wood", Count: 4}},
			want:    func(s *State) { delete(s.Items, "wood") },
			changes: []Change{{Path: "items.wood", Old: int64(4), New: nil}},
		},
		{
			name:  "item.consume of an equipped item clears its slot",
			setup: func(s *State) { s.Items["speedPotion"] = 2; s.Loadout["boost"] = "speedPotion" },
			ops:   []Op{{Kind: OpItemConsume, Item: "speedPotion", Count: 2}},
			want:  func(s *State) { delete(s.Items, "speedPotion"); delete(s.Loadout, "boost") },
			changes: []Change{
				{Path: "items.speedPotion", Old: int64(2), New: nil},
				{Path: "loadout.boost", Old: "speedPotion", New: nil},
			},
		},
		{
			name:    "loadout.set equips an owned item",
			setup:   func(s *State) { s.Items["goldenHammer"] = 1 },
			ops:     []Op{{Kind: OpLoadoutSet, Slot: "tool", Item: "goldenHammer"}},
			actor:   companion,
			want:    func(s *State) { s.Loadout["tool"] = "goldenHammer" },
			changes: []Change{{Path: "loadout.tool", Old: nil, New: "goldenHammer"}},
		},
		{
			name:  "loadout.set with empty item clears",
			setup: func(s *State) { s.Items["neonHat"] = 1; s.Loadout["hat"] = "neonHat" },
			ops:   []Op{{Kind: OpLoadoutSet, Slot: "hat"}},
			want:  func(s *State) { delete(s.Loadout, "hat") },
		},
		{
			name:  "inventory.swap removes then adds",
			setup: func(s *State) { s.Items["wood"] = 50 },
			ops:   []Op{{Kind: OpInventorySwap, Remove: map[string]int64{"wood": 50}, Add: map[string]int64{"steel": 5, "cargoCrane": 1}}},
			want:  func(s *State) { delete(s.Items, "wood"); s.Items["steel"], s.Items["cargoCrane"] = 5, 1 },
		},
		{
			name:    "settings.set overwrites",
			ops:     []Op{{Kind: OpSettingsSet, Key: "volume", Value: 10}, {Kind: OpSettingsSet, Key: "language", Value: "ja"}, {Kind: OpSettingsSet, Key: "volume", Value: 20.0}},
			actor:   companion,
			want:    func(s *State) { s.Settings["volume"], s.Settings["language"] = int64(20), "ja" },
			changes: []Change{{Path: "settings.language", Old: "en", New: "ja"}, {Path: "settings.volume", Old: int64(80), New: int64(20)}},
		},
		{
			name:  "collection.add records a dot",
			ops:   []Op{{Kind: OpCollectionAdd, Collection: "wishlist", Element: "first_win"}},
			actor: companion,
			want:  func(s *State) { s.Collections["wishlist"]["first_win"] = []Dot{{Version: 11, Actor: "uid-1"}} },
			changes: []Change{{Path: "collections.wishlist.first_win", Old: nil,
				New: []any{map[string]any{"v": int64(11), "a": "uid-1"}}}},
		},
		{
			name: "collection.add again keeps one dot per actor",
			setup: func(s *State) {
				s.Collections["wishlist"]["first_win"] = []Dot{{Version: 3, Actor: "job-1"}, {Version: 4, Actor: "uid-1"}}
			},
			ops:   []Op{{Kind: OpCollectionAdd, Collection: "wishlist", Element: "first_win"}},
			actor: companion,
			want: func(s *State) {
				s.Collections["wishlist"]["first_win"] = []Dot{{Version: 3, Actor: "job-1"}, {Version: 11, Actor: "uid-1"}}
			},
		},
		{
			name: "collection.remove of everything",
			setup: func(s *State) {
				s.Collections["pets"]["cat"] = []Dot{{Version: 3, Actor: "a"}, {Version: 9, Actor: "b"}}
			},
			ops:  []Op{{Kind: OpCollectionRemove, Collection: "pets", Element: "cat"}},
			want: func(s *State) { delete(s.Collections["pets"], "cat") },
		},
		{
			name:  "collection.remove of an absent element is a no-op",
			ops:   []Op{{Kind: OpCollectionRemove, Collection: "wishlist", Element: "dragon", ObservedVersion: 5}},
			want:  func(s *State) {},
			actor: companion,
		},
		{
			name:  "purchase charges the catalog price and applies its grants",
			setup: func(s *State) { s.Currencies["gems"] = 200; s.Currencies["coins"] = 10000 },
			ops:   []Op{{Kind: OpPurchase, SKU: "parrotPet"}},
			actor: companion,
			want: func(s *State) {
				s.Currencies["gems"], s.Currencies["coins"] = 80, 0
				s.Collections["pets"]["parrot"] = []Dot{{Version: 11, Actor: "uid-1"}}
				s.Stats["xp"] = 500
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := c.NewState()
			if tt.setup != nil {
				tt.setup(&st)
			}
			before := st.Clone()
			actor := tt.actor
			if actor.Kind == "" {
				actor = server
			}
			a := mustApply(t, c, st, 10, Mutation{ExpectedVersion: i64(10), Ops: tt.ops}, actor)
			want := before.Clone()
			tt.want(&want)
			if diff := cmp.Diff(want, a.State); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if tt.changes != nil {
				if diff := cmp.Diff(tt.changes, a.Changes); diff != "" {
					t.Errorf("changes (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(before, st); diff != "" {
				t.Errorf("input state changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyRejections(t *testing.T) {
	c := sampleConfig(t)
	tests := []struct {
		name    string
		setup   func(s *State)
		ops     []Op
		code    Code
		field   string
		details map[string]any
	}{
		{
			name: "spend below floor", ops: []Op{{Kind: OpCurrencyAdd, Currency: "gems", Amount: -11}},
			code: CodeInsufficientFunds, field: "ops[0]",
			details: map[string]any{"currency": "gems", "balance": int64(10), "amount": int64(-11)},
		},
		{
			name: "credit above cap", ops: []Op{{Kind: OpCurrencyAdd, Currency: "gems", Amount: 10000000}},
			code: CodeLimitExceeded, field: "ops[0]",
			details: map[string]any{"currency": "gems", "balance": int64(10), "cap": int64(10000000)},
		},
		{
			name: "stat above cap", ops: []Op{{Kind: OpStatAdd, Stat: "plotsUnlocked", Amount: 12}},
			code: CodeLimitExceeded, field: "ops[0]", details: map[string]any{"stat": "plotsUnlocked"},
		},
		{
			name: "stat below floor", ops: []Op{{Kind: OpStatAdd, Stat: "level", Amount: -1}},
			code: CodeInsufficientFunds, field: "ops[0]", details: map[string]any{"stat": "level", "balance": int64(1)},
		},
		{
			name: "second op fails, first is undone", ops: []Op{{Kind: OpCurrencyAdd, Currency: "coins", Amount: 5}, {Kind: OpCurrencyAdd, Currency: "coins", Amount: -1000}},
			code: CodeInsufficientFunds, field: "ops[1]", details: map[string]any{"opIndex": 1, "balance": int64(255)},
		},
		{
			name: "stack over maxStack", setup: func(s *State) { s.Items["speedPotion"] = 95 },
			ops:  []Op{{Kind: OpItemGrant, Item: "speedPotion", Count: 5}},
			code: CodeLimitExceeded, field: "ops[0]", details: map[string]any{"item": "speedPotion", "have": int64(95), "maxStack": int64(99)},
		},
		{
			name: "second copy of a unique item", setup: func(s *State) { s.Items["neonHat"] = 1 },
			ops:  []Op{{Kind: OpItemGrant, Item: "neonHat", Count: 1}},
			code: CodeLimitExceeded, field: "ops[0]", details: map[string]any{"item": "neonHat"},
		},
		{
			name: "consume beyond count", setup: func(s *State) { s.Items["wood"] = 2 },
			ops:  []Op{{Kind: OpItemConsume, Item: "wood", Count: 3}},
			code: CodeInsufficientFunds, field: "ops[0]", details: map[string]any{"item": "wood", "have": int64(2), "want": int64(3)},
		},
		{
			name: "equip an unowned item", ops: []Op{{Kind: OpLoadoutSet, Slot: "hat", Item: "neonHat"}},
			code: CodeNotOwned, field: "ops[0].item", details: map[string]any{"item": "neonHat", "have": int64(0), "equippedElsewhere": int64(0)},
		},
		{
			name: "swap without the items", setup: func(s *State) { s.Items["wood"] = 1 },
			ops:  []Op{{Kind: OpInventorySwap, Remove: map[string]int64{"wood": 2}, Add: map[string]int64{"steel": 1}}},
			code: CodeInsufficientFunds, field: "ops[0].remove.wood",
		},
		{
			name: "swap adds a unique item twice", setup: func(s *State) { s.Items["wood"] = 1; s.Items["cargoCrane"] = 1 },
			ops:  []Op{{Kind: OpInventorySwap, Remove: map[string]int64{"wood": 1}, Add: map[string]int64{"cargoCrane": 1}}},
			code: CodeLimitExceeded, field: "ops[0].add.cargoCrane",
		},
		{
			name: "replace with an invalid save", ops: []Op{{Kind: OpSaveReplace, Save: map[string]any{"currencies": map[string]any{"diamonds": int64(1)}}}},
			code: CodeInvalidArgument, field: "ops[0].save.currencies.diamonds",
		},
		{
			name: "replace with a non-string element", ops: []Op{{Kind: OpSaveReplace, Save: map[string]any{"collections": map[string]any{"pets": []any{int64(1)}}}}},
			code: CodeInvalidArgument, field: "ops[0].save.collections.pets[0]",
		},
		{
			name: "purchase without funds", ops: []Op{{Kind: OpPurchase, SKU: "goldenHammer"}},
			code: CodeInsufficientFunds, field: "ops[0]",
			details: map[string]any{"currency": "coins", "balance": int64(250), "amount": int64(-25000), "sku": "goldenHammer", "price": int64(25000)},
		},
		{
			name: "purchase of a unique item already owned", setup: func(s *State) { s.Currencies["coins"] = 30000; s.Items["goldenHammer"] = 1 },
			ops:  []Op{{Kind: OpPurchase, SKU: "goldenHammer"}},
			code: CodeLimitExceeded, field: "ops[0]", details: map[string]any{"sku": "goldenHammer", "item": "goldenHammer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := c.NewState()
			if tt.setup != nil {
				tt.setup(&st)
			}
			before := st.Clone()
			a, err := c.Apply(st, 3, Mutation{ExpectedVersion: i64(3), Ops: tt.ops}, server)
			wantError(t, err, tt.code, tt.field)
			e, _ := AsError(err)
			for k, want := range tt.details {
				if got := e.Details[k]; !cmp.Equal(want, got) {
					t.Errorf("details[%q] = %#v, want %#v (all: %v)", k, got, want, e.Details)
				}
			}
			if diff := cmp.Diff(Applied{}, a); diff != "" {
				t.Errorf("Applied not empty on error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, st); diff != "" {
				t.Errorf("input state changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverflowAtInt64Bounds(t *testing.T) {
	c, err := ParseConfig([]byte(fmt.Sprintf(`{
		"game": "Bounds", "schemaVersion": 1,
		"currencies": {"big": {"floor": %d, "cap": %d, "start": 0}},
		"items": {"grain": {"stackable": true, "maxStack": %d}}
	}`, int64(math.MinInt64), int64(math.MaxInt64), int64(math.MaxInt64))))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(s *State)
		op    Op
		code  Code
	}{
		{"credit past MaxInt64", func(s *State) { s.Currencies["big"] = math.MaxInt64 - 1 }, Op{Kind: OpCurrencyAdd, Currency: "big", Amount: 2}, CodeLimitExceeded},
		{"MaxInt64 plus MaxInt64", func(s *State) { s.Currencies["big"] = math.MaxInt64 }, Op{Kind: OpCurrencyAdd, Currency: "big", Amount: math.MaxInt64}, CodeLimitExceeded},
		{"debit past MinInt64", func(s *State) { s.Currencies["big"] = math.MinInt64 + 1 }, Op{Kind: OpCurrencyAdd, Currency: "big", Amount: -2}, CodeInsufficientFunds},
		{"MinInt64 amount", func(s *State) { s.Currencies["big"] = -1 }, Op{Kind: OpCurrencyAdd, Currency: "big", Amount: math.MinInt64}, CodeInsufficientFunds},
		{"stack past MaxInt64", func(s *State) { s.Items["grain"] = math.MaxInt64 }, Op{Kind: OpItemGrant, Item: "grain", Count: 1}, CodeLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := c.NewState()
			tt.setup(&st)
			_, err := c.Apply(st, 0, Mutation{Ops: []Op{tt.op}}, server)
			wantError(t, err, tt.code, "ops[0]")
		})
	}
	t.Run("exactly at the bounds succeeds", func(t *testing.T) {
		st := c.NewState()
		st.Currencies["big"] = math.MaxInt64 - 1
		a := mustApply(t, c, st, 0, Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "big", Amount: 1}}}, server)
		if a.State.Currencies["big"] != math.MaxInt64 {
			t.Errorf("big = %d, want MaxInt64", a.State.Currencies["big"])
		}
		a = mustApply(t, c, a.State, 1, Mutation{Ops: []Op{{Kind: OpCurrencyAdd, Currency: "big", Amount: math.MinInt64}}}, server)
		if a.State.Currencies["big"] != -1 {
			t.Errorf("big = %d, want -1", a.State.Currencies["big"])
		}
	})
}

func TestVersionConflict(t *testing.T) {
	c := sampleConfig(t)
	st := c.NewState()
	st.Items["neonHat"] = 1
	tests := []struct {
		name     string
		expected *int64
		ops      []Op
		code     Code
	}{
		{"stale versioned op", i64(4), []Op{{Kind: OpLoadoutSet, Slot: "hat", Item: "neonHat"}}, CodeVersionConflict},
		{"future versioned op", i64(6), []Op{{Kind: OpLoadoutSet, Slot: "hat", Item: "neonHat"}}, CodeVersionConflict},
		{"stale delta with expectedVersion", i64(4), []Op{{Kind: OpXPAdd, Amount: 1}}, CodeVersionConflict},
		{"current versioned op", i64(5), []Op{{Kind: OpLoadoutSet, Slot: "hat", Item: "neonHat"}}, ""},
		{"delta without expectedVersion", nil, []Op{{Kind: OpXPAdd, Amount: 1}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Apply(st, 5, Mutation{ExpectedVersion: tt.expected, Ops: tt.ops}, server)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				return
			}
			wantError(t, err, tt.code, "")
			e, _ := AsError(err)
			if diff := cmp.Diff(map[string]any{"expectedVersion": *tt.expected, "currentVersion": int64(5)}, e.Details); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
		})
	}
}

// TestORSetAddWinsOverConcurrentRemove plays a phone and a game server
// editing the same collection without coordination.
func TestORSetAddWinsOverConcurrentRemove(t *testing.T) {
	c := sampleConfig(t)
	phone := Actor{Kind: ActorCompanion, ID: "phone"}
	st := c.NewState()
	// v1: the phone adds "cat".
	a := mustApply(t, c, st, 0, Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "wishlist", Element: "cat"}}}, phone)
	// v2: the server, unaware of the phone's view, adds "cat" again.
	a = mustApply(t, c, a.State, 1, Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "wishlist", Element: "cat"}}}, server)
	// v3: the phone removes "cat" having observed only version 1.
	a = mustApply(t, c, a.State, 2, Mutation{Ops: []Op{{Kind: OpCollectionRemove, Collection: "wishlist", Element: "cat", ObservedVersion: 1}}}, phone)
	if diff := cmp.Diff(map[string][]Dot{"cat": {{Version: 2, Actor: "job-1"}}}, a.State.Collections["wishlist"]); diff != "" {
		t.Errorf("after stale remove, the concurrent add must survive (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"collections.wishlist"}, a.ChangedPaths); diff != "" {
		t.Errorf("changed paths (-want +got):\n%s", diff)
	}
	// v4: having observed version 3, the phone's remove takes it out.
	a = mustApply(t, c, a.State, 3, Mutation{Ops: []Op{{Kind: OpCollectionRemove, Collection: "wishlist", Element: "cat", ObservedVersion: 3}}}, phone)
	if got := a.State.Elements("wishlist"); len(got) != 0 {
		t.Errorf("elements after up-to-date remove = %v, want none", got)
	}
	if diff := cmp.Diff([]Change{{Path: "collections.wishlist.cat", Old: []any{map[string]any{"v": int64(2), "a": "job-1"}}, New: nil}}, a.Changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestCollectionMaxElements(t *testing.T) {
	c := sampleConfig(t)
	st := c.NewState()
	for i := 0; i < 50; i++ {
		st.Collections["pets"][fmt.Sprintf("pet%d", i)] = []Dot{{Version: 1, Actor: "x"}}
	}
	_, err := c.Apply(st, 1, Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "pets", Element: "one_more"}}}, server)
	wantError(t, err, CodeLimitExceeded, "ops[0].element")
	// Re-adding an element already present is not growth.
	if _, err := c.Apply(st, 1, Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "pets", Element: "pet7"}}}, server); err != nil {
		t.Errorf("re-add at the limit: %v", err)
	}
}

// TestPurchaseTamperedBody checks that a client can name only a SKU: a price
// or grant in the body is refused, and what is charged and granted comes
// from the catalog.
func TestPurchaseTamperedBody(t *testing.T) {
	c := sampleConfig(t)
	tampered := []string{
		`{"ops":[{"op":"purchase","sku":"starterPack","price":{"gems":1}}]}`,
		`{"ops":[{"op":"purchase","sku":"starterPack","grants":[{"op":"currency.add","currency":"gems","amount":1000000}]}]}`,
		`{"ops":[{"op":"purchase","sku":"starterPack","currency":"gems","amount":1}]}`,
	}
	for i, body := range tampered {
		t.Run(fmt.Sprintf("body %d", i), func(t *testing.T) {
			m, err := DecodeMutation([]byte(body))
			if err == nil {
				err = c.CheckMutation(m, ActorCompanion)
			}
			wantError(t, err, CodeInvalidArgument, "")
		})
	}
	t.Run("catalog decides", func(t *testing.T) {
		m, err := DecodeMutation([]byte(`{"ops":[{"op":"purchase","sku":"starterPack"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		st := c.NewState()
		st.Currencies["gems"] = 60
		a := mustApply(t, c, st, 0, m, companion)
		want := []Change{
			{Path: "collections.badges.starter", Old: nil, New: []any{map[string]any{"v": int64(1), "a": "uid-1"}}},
			{Path: "currencies.coins", Old: int64(250), New: int64(5250)},
			{Path: "currencies.gems", Old: int64(60), New: int64(10)},
			{Path: "items.wood", Old: nil, New: int64(200)},
		}
		if diff := cmp.Diff(want, a.Changes); diff != "" {
			t.Errorf("changes (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"collections.badges", "currencies.coins", "currencies.gems", "items.wood"}, a.ChangedPaths); diff != "" {
			t.Errorf("changed paths (-want +got):\n%s", diff)
		}
	})
}

func TestSaveReplace(t *testing.T) {
	c := sampleConfig(t)
	st := c.NewState()
	st.Collections["badges"]["old"] = []Dot{{Version: 2, Actor: "job-0"}}
	view := st.View()
	view["currencies"].(map[string]any)["coins"] = int64(999)
	view["collections"] = map[string]any{"badges": []any{"old", "new"}}
	a := mustApply(t, c, st, 7, Mutation{ExpectedVersion: i64(7), Ops: []Op{{Kind: OpSaveReplace, Save: view}}}, admin)
	want := c.NewState()
	want.Currencies["coins"] = 999
	want.Collections["badges"]["old"] = []Dot{{Version: 2, Actor: "job-0"}}
	want.Collections["badges"]["new"] = []Dot{{Version: 8, Actor: "admin-1"}}
	if diff := cmp.Diff(want, a.State); diff != "" {
		t.Errorf("replaced state (-want +got):\n%s", diff)
	}
	// The encoded form replaces as is, and later ops apply on top.
	a = mustApply(t, c, a.State, 8, Mutation{ExpectedVersion: i64(8), Ops: []Op{
		{Kind: OpSaveReplace, Save: c.NewState().Encode()},
		{Kind: OpCurrencyAdd, Currency: "coins", Amount: 1},
	}}, system)
	want = c.NewState()
	want.Currencies["coins"] = 251
	if diff := cmp.Diff(want, a.State); diff != "" {
		t.Errorf("replaced state (-want +got):\n%s", diff)
	}
}

func TestLoadoutCopies(t *testing.T) {
	c := twoSlotConfig(t)
	st := c.NewState()
	st.Items["potion"] = 2
	a := mustApply(t, c, st, 0, Mutation{ExpectedVersion: i64(0), Ops: []Op{
		{Kind: OpLoadoutSet, Slot: "left", Item: "potion"},
		{Kind: OpLoadoutSet, Slot: "right", Item: "potion"},
		{Kind: OpLoadoutSet, Slot: "right", Item: "potion"},
	}}, server)
	if diff := cmp.Diff(map[string]string{"left": "potion", "right": "potion"}, a.State.Loadout); diff != "" {
		t.Errorf("loadout (-want +got):\n%s", diff)
	}
	// Consuming one copy unequips it from the last slot.
	b := mustApply(t, c, a.State, 1, Mutation{Ops: []Op{{Kind: OpItemConsume, Item: "potion", Count: 1}}}, server)
	if diff := cmp.Diff(map[string]string{"left": "potion"}, b.State.Loadout); diff != "" {
		t.Errorf("loadout after consume (-want +got):\n%s", diff)
	}
	// A third slot for two copies is refused.
	st.Items["potion"] = 1
	_, err := c.Apply(st, 0, Mutation{ExpectedVersion: i64(0), Ops: []Op{
		{Kind: OpLoadoutSet, Slot: "left", Item: "potion"},
		{Kind: OpLoadoutSet, Slot: "right", Item: "potion"},
	}}, server)
	wantError(t, err, CodeNotOwned, "ops[1].item")
}

func TestSaveSizeLimit(t *testing.T) {
	tree := sampleTree(t)
	setPath(t, tree, "limits.maxSaveBytes", 600)
	setPath(t, tree, "collections.badges.maxElementLength", 200)
	data, _ := json.Marshal(tree)
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Apply(c.NewState(), 0, Mutation{Ops: []Op{
		{Kind: OpCollectionAdd, Collection: "badges", Element: strings.Repeat("a", 200)},
		{Kind: OpCollectionAdd, Collection: "badges", Element: strings.Repeat("b", 200)},
	}}, server)
	wantError(t, err, CodeLimitExceeded, "")
	e, _ := AsError(err)
	if e.Details["limit"] != 600 {
		t.Errorf("details = %v, want limit 600", e.Details)
	}
}

func TestActorWithoutID(t *testing.T) {
	c := sampleConfig(t)
	a := mustApply(t, c, c.NewState(), 0, Mutation{Ops: []Op{{Kind: OpCollectionAdd, Collection: "pets", Element: "cat"}}}, Actor{Kind: ActorSystem})
	if diff := cmp.Diff([]Dot{{Version: 1, Actor: "system"}}, a.State.Collections["pets"]["cat"]); diff != "" {
		t.Errorf("dots (-want +got):\n%s", diff)
	}
}

// TestCompanionCannotAddWhatTheCatalogSells checks that the companion edits
// only collections declared companionEditable: a pet the catalog sells
// cannot be added for free from the companion.
func TestCompanionCannotAddWhatTheCatalogSells(t *testing.T) {
	c := sampleConfig(t)
	for _, op := range []Op{
		{Kind: OpCollectionAdd, Collection: "pets", Element: "parrot"},
		{Kind: OpCollectionRemove, Collection: "badges", Element: "starter"},
	} {
		err := c.CheckMutation(Mutation{Ops: []Op{op}}, ActorCompanion)
		wantError(t, err, CodePermissionDenied, "ops[0].collection")
		if err := c.CheckMutation(Mutation{Ops: []Op{op}}, ActorServer); err != nil {
			t.Errorf("a game server may still %s %s: %v", op.Kind, op.Collection, err)
		}
	}
	// From the companion, a remove must say what the user saw: "remove
	// every add" would take adds made on other devices since.
	err := c.CheckMutation(Mutation{Ops: []Op{{Kind: OpCollectionRemove, Collection: "wishlist", Element: "x"}}}, ActorCompanion)
	wantError(t, err, CodeInvalidArgument, "ops[0].observedVersion")

	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), `"pets": {"maxElements": 50, "maxElementLength": 32}`,
		`"pets": {"maxElements": 50, "maxElementLength": 32, "companionEditable": true}`, 1)
	_, err = ParseConfig([]byte(cfg))
	wantError(t, err, CodeInvalidArgument, "")
	if err == nil || !strings.Contains(err.Error(), "companionEditable") {
		t.Errorf("a SKU granting into a companion-editable collection: %v, want a config error naming companionEditable", err)
	}
}

// TestEmptyArraysAreEmptyObjects decodes what Roblox's JSONEncode sends for
// empty tables ([]) where the API expects objects.
func TestEmptyArraysAreEmptyObjects(t *testing.T) {
	c := sampleConfig(t)
	m, err := DecodeMutation([]byte(`{"expectedVersion":0,"ops":[{"op":"inventory.swap","remove":{"wood":1},"add":[]},{"op":"save.replace","save":{"currencies":{"coins":5},"items":[],"loadout":[],"settings":[],"collections":{"badges":[]}}}]}`))
	if err != nil {
		t.Fatalf("DecodeMutation: %v", err)
	}
	if m.Ops[0].Add == nil || len(m.Ops[0].Add) != 0 {
		t.Errorf("add = %#v, want an empty map", m.Ops[0].Add)
	}
	st := c.NewState()
	st.Items["wood"] = 1
	if _, err := c.Apply(st, 0, m, Actor{Kind: ActorServer, ID: "job-1"}); err != nil {
		t.Errorf("Apply: %v", err)
	}
	if _, err := DecodeMutation([]byte(`{"ops":[{"op":"inventory.swap","remove":[1],"add":{}}]}`)); ErrorCode(err) != CodeInvalidArgument {
		t.Errorf("a non-empty array where an object belongs: %v, want INVALID_ARGUMENT", err)
	}
}
