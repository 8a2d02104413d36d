package save

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMigrateSampleFromEveryVersion(t *testing.T) {
	c := sampleConfig(t)
	tests := []struct {
		name string
		from int
		raw  map[string]any
		want func(s *State)
	}{
		{
			name: "v1 top-level coins, float balances, old hat",
			from: 1,
			raw: map[string]any{
				"coins":     float64(1500),
				"gems":      int64(3),
				"xp":        "120",
				"inventory": map[string]any{"wood": int64(40), "pirateHat": int64(1)},
				"musicOn":   false,
			},
			want: func(s *State) {
				s.Currencies["coins"], s.Currencies["gems"], s.Stats["xp"] = 1500, 3, 120
				s.Items["wood"], s.Items["captainHat"] = 40, 1
				s.Settings["music"] = false
			},
		},
		{
			name: "v0 counts as v1",
			from: 0,
			raw:  map[string]any{"coins": int64(7)},
			want: func(s *State) { s.Currencies["coins"] = 7 },
		},
		{
			name: "v2 with shadows and both hats merged",
			from: 2,
			raw: map[string]any{
				"currencies": map[string]any{"coins": int64(10), "gems": int64(1)},
				"stats":      map[string]any{"xp": int64(5)},
				"items":      map[string]any{"pirateHat": int64(1), "steel": int64(9)},
				"settings":   map[string]any{"music": true, "volume": int64(50), "language": "de", "shadows": false},
			},
			want: func(s *State) {
				s.Currencies["coins"], s.Currencies["gems"], s.Stats["xp"] = 10, 1, 5
				s.Items["captainHat"], s.Items["steel"] = 1, 9
				s.Settings["volume"], s.Settings["language"] = int64(50), "de"
			},
		},
		{
			name: "v3 is current",
			from: 3,
			raw: map[string]any{
				"currencies": map[string]any{"coins": int64(99)},
				"loadout":    map[string]any{"hat": "neonHat"},
				"items":      map[string]any{"neonHat": int64(1)},
			},
			want: func(s *State) {
				s.Currencies["coins"] = 99
				s.Items["neonHat"] = 1
				s.Loadout["hat"] = "neonHat"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := CloneTree(tt.raw)
			got, err := c.LoadState(tt.raw, tt.from)
			if err != nil {
				t.Fatalf("LoadState: %v", err)
			}
			want := c.NewState()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tt.raw); diff != "" {
				t.Errorf("input changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestMigrateRawResult(t *testing.T) {
	c := sampleConfig(t)
	got, err := c.Migrate(map[string]any{"coins": "250", "inventory": map[string]any{"pirateHat": int64(1)}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"currencies": map[string]any{"coins": int64(250)},
		"items":      map[string]any{"captainHat": int64(1)},
		"settings":   map[string]any{"music": true, "volume": int64(80), "language": "en", "graphicsQuality": "medium"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("migrated (-want +got):\n%s", diff)
	}
}

func TestMigrateFailures(t *testing.T) {
	c := sampleConfig(t)
	tests := []struct {
		name        string
		from        int
		raw         map[string]any
		step, field string
	}{
		{"coins not numeric", 1, map[string]any{"coins": "lots"}, "1->2", "coins"},
		{"fractional coins", 1, map[string]any{"coins": 1.5}, "1->2", "coins"},
		{"coins too big", 1, map[string]any{"coins": 1e30}, "1->2", "coins"},
		{"currencies not an object", 1, map[string]any{"coins": int64(1), "currencies": int64(5)}, "1->2", "currencies"},
		{"destination exists", 1, map[string]any{"coins": int64(1), "currencies": map[string]any{"coins": int64(2)}}, "1->2", "currencies.coins"},
		{"v1 without coins", 1, map[string]any{"gems": int64(2)}, "1->2", "coins"},
		{"v2 with shadows only", 2, map[string]any{"settings": int64(1)}, "2->3", "settings"},
		{"items not an object", 2, map[string]any{"currencies": map[string]any{}, "items": []any{}}, "2->3", "items"},
		{"hats cannot merge", 2, map[string]any{"currencies": map[string]any{}, "items": map[string]any{"pirateHat": true, "captainHat": int64(1)}}, "2->3", "items.captainHat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := CloneTree(tt.raw)
			_, err := c.Migrate(tt.raw, tt.from)
			wantError(t, err, CodeSaveMigrationFailed, "")
			e, _ := AsError(err)
			if e.Details["step"] != tt.step || e.Details["field"] != tt.field || e.Details["reason"] == "" {
				t.Errorf("details = %v, want step %q field %q and a reason", e.Details, tt.step, tt.field)
			}
			if diff := cmp.Diff(before, tt.raw); diff != "" {
				t.Errorf("input changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestLoadStateValidationFailure(t *testing.T) {
	c := sampleConfig(t)
	_, err := c.LoadState(map[string]any{"coins": int64(-3)}, 1)
	wantError(t, err, CodeSaveMigrationFailed, "")
	e, _ := AsError(err)
	if e.Details["step"] != "validate" || e.Details["field"] != "currencies.coins" {
		t.Errorf("details = %v, want step validate, field currencies.coins", e.Details)
	}
}

func TestMigrateSchemaTooNew(t *testing.T) {
	c := sampleConfig(t)
	_, err := c.Migrate(map[string]any{}, 4)
	wantError(t, err, CodeSchemaTooNew, "")
	e, _ := AsError(err)
	if diff := cmp.Diff(map[string]any{"storedSchema": 4, "serverSchema": 3}, e.Details); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
}

func TestRegisteredMigration(t *testing.T) {
	newConfig := func(t *testing.T) *Config {
		t.Helper()
		c, err := ParseConfig([]byte(`{
			"game": "Levels", "schemaVersion": 2,
			"stats": {"xp": {"floor": 0, "cap": 1000000, "start": 0}, "level": {"floor": 1, "cap": 100, "start": 1}},
			"migrations": [{"from": 1, "steps": [{"move": {"from": "xp", "to": "stats.xp"}}]}]
		}`))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	levelFromXP := func(raw map[string]any) error {
		stats, _ := raw["stats"].(map[string]any)
		xp, _ := stats["xp"].(int64)
		if xp < 0 {
			return invalidf("stats.xp", "negative")
		}
		stats["level"] = 1 + xp/1000
		return nil
	}
	t.Run("runs after declarative steps", func(t *testing.T) {
		c := newConfig(t)
		c.RegisterMigration(1, "levelFromXP", levelFromXP)
		got, err := c.LoadState(map[string]any{"xp": int64(4500)}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got.Stats["level"] != 5 || got.Stats["xp"] != 4500 {
			t.Errorf("stats = %v, want xp 4500 level 5", got.Stats)
		}
	})
	tests := []struct {
		name  string
		fn    func(map[string]any) error
		field string
	}{
		{"domain error keeps its field", levelFromXP, "stats.xp"},
		{"plain error", func(map[string]any) error { return errors.New("bad data") }, ""},
		{"panic", func(map[string]any) error { panic("oops") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConfig(t)
			c.RegisterMigration(1, "custom", tt.fn)
			raw := map[string]any{"xp": int64(-1)}
			_, err := c.Migrate(raw, 1)
			wantError(t, err, CodeSaveMigrationFailed, "")
			e, _ := AsError(err)
			if e.Details["step"] != "1->2" || e.Details["name"] != "custom" {
				t.Errorf("details = %v, want step 1->2 and name custom", e.Details)
			}
			if got, _ := e.Details["field"].(string); got != tt.field {
				t.Errorf("field = %q, want %q", got, tt.field)
			}
			if _, moved := raw["stats"]; moved {
				t.Error("input was changed")
			}
		})
	}
	t.Run("out of range panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("RegisterMigration(2, ...) did not panic for a schema-2 config")
			}
		}()
		newConfig(t).RegisterMigration(2, "late", levelFromXP)
	})
}

func TestCheckJoinSchemaAndClientSchema(t *testing.T) {
	c := sampleConfig(t) // schema 3
	tests := []struct {
		name           string
		exists         bool
		stored, client int
		want           Code // "" when the join may be served
		wantStored     bool // details name the stored schema
	}{
		{name: "new player, code at the schema", client: 3},
		{name: "new player, code not stated", client: 0},
		{name: "new player, older code", client: 2, want: CodeSchemaTooNew},
		{name: "stored older, code at the schema", exists: true, stored: 1, client: 3},
		{name: "stored before versioning counts as 1", exists: true, stored: 0, client: 3},
		{name: "stored at the schema, older code", exists: true, stored: 3, client: 2, want: CodeSchemaTooNew, wantStored: true},
		{name: "stored newer than the service", exists: true, stored: 4, client: 3, want: CodeSchemaTooNew, wantStored: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.CheckJoinSchema(tt.exists, tt.stored, tt.client)
			if got := ErrorCode(err); err != nil && got != tt.want || err == nil && tt.want != "" {
				t.Fatalf("CheckJoinSchema = %v, want %q", err, tt.want)
			}
			if e, ok := AsError(err); ok {
				if _, has := e.Details["storedSchema"]; has != tt.wantStored || e.Details["serviceSchema"] != 3 {
					t.Errorf("details %v: storedSchema present %v, want %v; serviceSchema 3", e.Details, has, tt.wantStored)
				}
			}
		})
	}
	for client, want := range map[int]Code{0: "", 3: "", 2: CodeSchemaTooNew, 4: CodeInvalidArgument} {
		if err := c.CheckClientSchema(client); ErrorCode(err) != want && !(err == nil && want == "") {
			t.Errorf("CheckClientSchema(%d) = %v, want %q", client, err, want)
		}
	}
}
