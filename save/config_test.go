package save

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadSampleConfig(t *testing.T) {
	c := sampleConfig(t)
	if c.Game != "Harbor Tycoon" || c.SchemaVersion != 3 {
		t.Errorf("game, schema = %q, %d; want Harbor Tycoon, 3", c.Game, c.SchemaVersion)
	}
	if got, want := c.maxOps(), 50; got != want {
		t.Errorf("maxOps = %d, want %d", got, want)
	}
	var skus []string
	for _, v := range c.Catalog() {
		skus = append(skus, v.SKU)
	}
	if diff := cmp.Diff([]string{"goldenHammer", "parrotPet", "speedPotions", "starterPack"}, skus); diff != "" {
		t.Errorf("catalog SKUs (-want +got):\n%s", diff)
	}
	if got := c.Catalog()[1].Price; !cmp.Equal(got, map[string]int64{"coins": 10000, "gems": 120}) {
		t.Errorf("parrotPet price = %v", got)
	}
}

func TestCatalogIsACopy(t *testing.T) {
	c := sampleConfig(t)
	c.Catalog()[0].Price["coins"] = 1
	if got := c.SKUs["goldenHammer"].Price["coins"]; got != 25000 {
		t.Errorf("editing Catalog() changed the config: price = %d", got)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("LoadConfig(missing) = %v, want an error naming the file", err)
	}
}

func TestDefaultLimits(t *testing.T) {
	tree := sampleTree(t)
	delete(tree, "limits")
	data, _ := json.Marshal(tree)
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if c.maxOps() != DefaultMaxOpsPerMutation || c.maxSaveBytes() != DefaultMaxSaveBytes {
		t.Errorf("limits = %d, %d; want the defaults", c.maxOps(), c.maxSaveBytes())
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(t *testing.T, tree map[string]any)
		field string
		msg   string
	}{
		{"cap below floor", func(t *testing.T, tr map[string]any) { setPath(t, tr, "currencies.coins.cap", -5) },
			"currencies.coins.cap", "must be ≥ floor (0), got -5"},
		{"cap missing", func(t *testing.T, tr map[string]any) { setPath(t, tr, "currencies.gems", map[string]any{"floor": 0}) },
			"currencies.gems.cap", "required"},
		{"start above cap", func(t *testing.T, tr map[string]any) { setPath(t, tr, "stats.level.start", 501) },
			"stats.level.start", "must be between floor (1) and cap (500), got 501"},
		{"bad id", func(t *testing.T, tr map[string]any) { setPath(t, tr, "currencies.9lives", map[string]any{"cap": 1}) },
			"currencies.9lives", "id must match"},
		{"unknown field", func(t *testing.T, tr map[string]any) { setPath(t, tr, "currencies.coins.capp", 5) },
			"currencies.coins.capp", "unknown field"},
		{"unknown top-level field", func(t *testing.T, tr map[string]any) { tr["currency"] = map[string]any{} },
			"currency", "unknown field"},
		{"wrong type", func(t *testing.T, tr map[string]any) { setPath(t, tr, "items.wood.stackable", "yes") },
			"items.wood.stackable", "must be true or false"},
		{"fractional int", func(t *testing.T, tr map[string]any) { setPath(t, tr, "currencies.coins.floor", 1.5) },
			"currencies.coins.floor", "must be an integer"},
		{"game missing", func(t *testing.T, tr map[string]any) { delete(tr, "game") }, "game", "required"},
		{"schema zero", func(t *testing.T, tr map[string]any) { tr["schemaVersion"] = 0 }, "schemaVersion", "must be ≥ 1"},
		{"stackable without maxStack", func(t *testing.T, tr map[string]any) { setPath(t, tr, "items.wood", map[string]any{"stackable": true}) },
			"items.wood.maxStack", "must be ≥ 1 for a stackable item"},
		{"unique with maxStack", func(t *testing.T, tr map[string]any) { setPath(t, tr, "items.neonHat.maxStack", 2) },
			"items.neonHat.maxStack", "only stackable items"},
		{"slot names unknown item", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "loadoutSlots.hat.items", []any{"neonHat", "crown"})
		},
			"loadoutSlots.hat.items[1]", `unknown item "crown"`},
		{"setting type", func(t *testing.T, tr map[string]any) { setPath(t, tr, "settings.music.type", "boolean") },
			"settings.music.type", "must be"},
		{"setting default out of range", func(t *testing.T, tr map[string]any) { setPath(t, tr, "settings.volume.default", 101) },
			"settings.volume.default", "must be ≤ 100, got 101"},
		{"setting default not in enum", func(t *testing.T, tr map[string]any) { setPath(t, tr, "settings.language.default", "xx") },
			"settings.language.default", "must be one of"},
		{"setting default missing", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "settings.music", map[string]any{"type": "bool"})
		},
			"settings.music.default", "required"},
		{"min on bool", func(t *testing.T, tr map[string]any) { setPath(t, tr, "settings.music.min", 0) },
			"settings.music.min", "only int and number settings"},
		{"max below min", func(t *testing.T, tr map[string]any) { setPath(t, tr, "settings.volume.max", -1) },
			"settings.volume.max", "must be ≥ min"},
		{"enum value of wrong type", func(t *testing.T, tr map[string]any) { setPath(t, tr, "settings.language.enum", []any{"en", 3}) },
			"settings.language.enum[1]", "must be a string"},
		{"collection without max", func(t *testing.T, tr map[string]any) { setPath(t, tr, "collections.pets.maxElements", 0) },
			"collections.pets.maxElements", "must be ≥ 1"},
		{"price in unknown currency", func(t *testing.T, tr map[string]any) { setPath(t, tr, "catalog.goldenHammer.price.robux", 5) },
			"catalog.goldenHammer.price.robux", `unknown currency "robux"`},
		{"zero price", func(t *testing.T, tr map[string]any) { setPath(t, tr, "catalog.goldenHammer.price.coins", 0) },
			"catalog.goldenHammer.price.coins", "must be > 0"},
		{"grant of a versioned op", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "catalog.goldenHammer.grants", []any{map[string]any{"op": "loadout.set", "slot": "tool", "item": "goldenHammer"}})
		}, "catalog.goldenHammer.grants[0].op", "cannot be granted"},
		{"grant of unknown item", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "catalog.goldenHammer.grants", []any{map[string]any{"op": "item.grant", "item": "crown", "count": 1}})
		}, "catalog.goldenHammer.grants[0].item", `unknown item "crown"`},
		{"negative grant", func(t *testing.T, tr map[string]any) {
			setPath(t, tr, "catalog.goldenHammer.grants", []any{map[string]any{"op": "currency.add", "currency": "gems", "amount": -1}})
		}, "catalog.goldenHammer.grants[0].amount", "must be > 0"},
		{"no grants", func(t *testing.T, tr map[string]any) { setPath(t, tr, "catalog.goldenHammer.grants", []any{}) },
			"catalog.goldenHammer.grants", "required"},
		{"migration missing", func(t *testing.T, tr map[string]any) { tr["migrations"] = tr["migrations"].([]any)[:1] },
			"migrations", "no migration from 2 to 3"},
		{"migration from out of range", func(t *testing.T, tr map[string]any) {
			tr["migrations"] = append(tr["migrations"].([]any), map[string]any{"from": 3, "steps": []any{}})
		}, "migrations[2].from", "must be between 1 and 2"},
		{"migration step with two kinds", func(t *testing.T, tr map[string]any) {
			tr["migrations"].([]any)[1].(map[string]any)["steps"] = []any{map[string]any{"delete": "a", "toInt": "b"}}
		}, "migrations[1].steps[0]", "exactly one of"},
		{"migration step unknown kind", func(t *testing.T, tr map[string]any) {
			tr["migrations"].([]any)[1].(map[string]any)["steps"] = []any{map[string]any{"copy": "a"}}
		}, "migrations[1].steps[0].copy", "unknown field"},
		{"require with unknown type", func(t *testing.T, tr map[string]any) {
			tr["migrations"].([]any)[1].(map[string]any)["steps"] = []any{map[string]any{"require": map[string]any{"path": "a", "type": "float"}}}
		}, "migrations[1].steps[0].require.type", "must be one of"},
		{"empty path segment", func(t *testing.T, tr map[string]any) {
			tr["migrations"].([]any)[1].(map[string]any)["steps"] = []any{map[string]any{"delete": "settings..music"}}
		}, "migrations[1].steps[0].delete", "empty segment"},
		{"move into itself", func(t *testing.T, tr map[string]any) {
			tr["migrations"].([]any)[1].(map[string]any)["steps"] = []any{map[string]any{"move": map[string]any{"from": "a", "to": "a.b"}}}
		}, "migrations[1].steps[0].move.to", "into itself"},
		{"ops limit too high", func(t *testing.T, tr map[string]any) { setPath(t, tr, "limits.maxOpsPerMutation", 100000) },
			"limits.maxOpsPerMutation", "must be between"},
		{"save limit above Firestore", func(t *testing.T, tr map[string]any) { setPath(t, tr, "limits.maxSaveBytes", 2<<20) },
			"limits.maxSaveBytes", "must be between"},
		{"save limit below a new save", func(t *testing.T, tr map[string]any) { setPath(t, tr, "limits.maxSaveBytes", 10) },
			"limits.maxSaveBytes", "a new player's save"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := sampleTree(t)
			tt.edit(t, tree)
			data, err := json.Marshal(tree)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseConfig(data)
			wantError(t, err, CodeInvalidArgument, tt.field)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestParseConfigSyntax(t *testing.T) {
	tests := []struct {
		name, data, msg string
	}{
		{"trailing data", `{"game":"g","schemaVersion":1} {}`, "after the JSON value"},
		{"duplicate key", `{"game":"g","game":"h","schemaVersion":1}`, "game: duplicate key"},
		{"not an object", `[1]`, "must be an object"},
		{"truncated", `{"game":`, "unexpected end"},
		{"invalid UTF-8", "{\"game\":\"\xff\"}", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.data))
			wantError(t, err, CodeInvalidArgument, "")
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestMinimalConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"game":"Tiny","schemaVersion":1}`))
	if err != nil {
		t.Fatal(err)
	}
	st := c.NewState()
	if st.Currencies == nil || st.Items == nil || st.Collections == nil || st.Loadout == nil || st.Settings == nil || st.Stats == nil {
		t.Errorf("NewState has nil maps: %+v", st)
	}
	_, err = c.Apply(st, 0, Mutation{Ops: []Op{{Kind: OpXPAdd, Amount: 1}}}, server)
	wantError(t, err, CodeInvalidArgument, "ops[0].op")
}
