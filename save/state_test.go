package save

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func richState(t testing.TB, c *Config) State {
	t.Helper()
	st := c.NewState()
	st.Currencies["coins"] = 12345
	st.Stats["xp"] = 777
	st.Items["wood"] = 30
	st.Items["neonHat"] = 1
	st.Loadout["hat"] = "neonHat"
	st.Settings["volume"] = int64(35)
	st.Collections["badges"]["first_win"] = []Dot{{Version: 2, Actor: "job-1"}, {Version: 5, Actor: "uid-1"}}
	st.Collections["pets"]["parrot"] = []Dot{{Version: 3, Actor: "uid-1"}}
	return st
}

func TestNewState(t *testing.T) {
	c := sampleConfig(t)
	got := c.NewState()
	want := State{
		Currencies:  map[string]int64{"coins": 250, "gems": 10},
		Stats:       map[string]int64{"xp": 0, "level": 1, "rebirths": 0, "plotsUnlocked": 1},
		Items:       map[string]int64{},
		Loadout:     map[string]string{},
		Settings:    map[string]any{"music": true, "volume": int64(80), "language": "en", "graphicsQuality": "medium"},
		Collections: map[string]map[string][]Dot{"badges": {}, "pets": {}, "wishlist": {}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NewState (-want +got):\n%s", diff)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	c := sampleConfig(t)
	st := richState(t, c)
	raw := st.Encode()
	got, err := c.DecodeState(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// Through JSON, as a client or json.Number decoder would see it.
	data, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := decodeStrictJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err = c.DecodeState(tree.(map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, got); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	if got, want := raw["collections"].(map[string]any)["badges"].(map[string]any)["first_win"], []any{
		map[string]any{"v": int64(2), "a": "job-1"}, map[string]any{"v": int64(5), "a": "uid-1"},
	}; !cmp.Equal(got, want) {
		t.Errorf("encoded dots = %v, want %v", got, want)
	}
	if _, ok := raw["currencies"].(map[string]any)["coins"].(int64); !ok {
		t.Errorf("encoded coins is %T, want int64", raw["currencies"].(map[string]any)["coins"])
	}
}

func TestView(t *testing.T) {
	c := sampleConfig(t)
	v := richState(t, c).View()
	if diff := cmp.Diff(map[string]any{"badges": []string{"first_win"}, "pets": []string{"parrot"}, "wishlist": []string{}}, v["collections"]); diff != "" {
		t.Errorf("view collections (-want +got):\n%s", diff)
	}
	if v["currencies"].(map[string]any)["coins"] != int64(12345) {
		t.Errorf("view coins = %v", v["currencies"])
	}
}

func TestClone(t *testing.T) {
	c := sampleConfig(t)
	st := richState(t, c)
	cl := st.Clone()
	cl.Currencies["coins"] = 1
	cl.Collections["badges"]["first_win"][0].Actor = "changed"
	cl.Collections["pets"]["cat"] = []Dot{{Version: 9, Actor: "x"}}
	cl.Settings["music"] = false
	if diff := cmp.Diff(richState(t, c), st); diff != "" {
		t.Errorf("editing a clone changed the original (-want +got):\n%s", diff)
	}
}

func TestDecodeStateAcceptsNumberForms(t *testing.T) {
	c := sampleConfig(t)
	got, err := c.DecodeState(map[string]any{
		"currencies": map[string]any{"coins": float64(40), "gems": json.Number("7")},
		"items":      map[string]any{"wood": 3, "steel": int64(0)},
		"settings":   map[string]any{"volume": float64(20)},
		"loadout":    map[string]any{"tool": ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := c.NewState()
	want.Currencies["coins"], want.Currencies["gems"] = 40, 7
	want.Items["wood"] = 3
	want.Settings["volume"] = int64(20)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func TestDecodeStateErrors(t *testing.T) {
	c := sampleConfig(t)
	dots := func(v any) []any { return []any{map[string]any{"v": v, "a": "x"}} }
	tests := []struct {
		name  string
		raw   map[string]any
		field string
	}{
		{"unknown top-level", map[string]any{"coins": int64(1)}, "coins"},
		{"section not an object", map[string]any{"currencies": []any{int64(1)}}, "currencies"},
		{"unknown currency", map[string]any{"currencies": map[string]any{"diamonds": int64(1)}}, "currencies.diamonds"},
		{"below floor", map[string]any{"currencies": map[string]any{"coins": int64(-1)}}, "currencies.coins"},
		{"above cap", map[string]any{"stats": map[string]any{"level": int64(501)}}, "stats.level"},
		{"fractional", map[string]any{"currencies": map[string]any{"coins": 1.5}}, "currencies.coins"},
		{"string balance", map[string]any{"currencies": map[string]any{"coins": "5"}}, "currencies.coins"},
		{"unknown item", map[string]any{"items": map[string]any{"crown": int64(1)}}, "items.crown"},
		{"negative item", map[string]any{"items": map[string]any{"wood": int64(-1)}}, "items.wood"},
		{"two unique", map[string]any{"items": map[string]any{"neonHat": int64(2)}}, "items.neonHat"},
		{"over maxStack", map[string]any{"items": map[string]any{"speedPotion": int64(100)}}, "items.speedPotion"},
		{"unknown slot", map[string]any{"loadout": map[string]any{"cape": "neonHat"}}, "loadout.cape"},
		{"unowned loadout item", map[string]any{"loadout": map[string]any{"hat": "neonHat"}}, "loadout.hat"},
		{"slot refuses item", map[string]any{"items": map[string]any{"wood": int64(1)}, "loadout": map[string]any{"hat": "wood"}}, "loadout.hat"},
		{"unknown setting", map[string]any{"settings": map[string]any{"shadows": true}}, "settings.shadows"},
		{"setting type", map[string]any{"settings": map[string]any{"music": "yes"}}, "settings.music"},
		{"setting range", map[string]any{"settings": map[string]any{"volume": int64(101)}}, "settings.volume"},
		{"unknown collection", map[string]any{"collections": map[string]any{"hats": map[string]any{}}}, "collections.hats"},
		{"collection as list", map[string]any{"collections": map[string]any{"pets": []any{"cat"}}}, "collections.pets"},
		{"element without dots", map[string]any{"collections": map[string]any{"pets": map[string]any{"cat": []any{}}}}, "collections.pets.cat"},
		{"element too long", map[string]any{"collections": map[string]any{"pets": map[string]any{"a_very_long_pet_name_over_32_bytes": dots(int64(1))}}}, "collections.pets.a_very_long_pet_name_over_32_bytes"},
		{"reserved element", map[string]any{"collections": map[string]any{"pets": map[string]any{"__name__": dots(int64(1))}}}, "collections.pets.__name__"},
		{"dot version zero", map[string]any{"collections": map[string]any{"pets": map[string]any{"cat": dots(int64(0))}}}, "collections.pets.cat[0].v"},
		{"dot actor not UTF-8", map[string]any{"collections": map[string]any{"pets": map[string]any{"cat": []any{map[string]any{"v": int64(1), "a": "job-\xff"}}}}}, "collections.pets.cat[0].a"},
		{"dot unknown field", map[string]any{"collections": map[string]any{"pets": map[string]any{"cat": []any{map[string]any{"v": int64(1), "t": "x"}}}}}, "collections.pets.cat[0].t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.DecodeState(tt.raw)
			wantError(t, err, CodeInvalidArgument, tt.field)
		})
	}
}

func TestDecodeStateMaxElements(t *testing.T) {
	c := sampleConfig(t)
	pets := map[string]any{}
	for i := 0; i < 51; i++ {
		pets[string(rune('a'+i%26))+string(rune('a'+i/26))] = []any{map[string]any{"v": int64(1), "a": "x"}}
	}
	_, err := c.DecodeState(map[string]any{"collections": map[string]any{"pets": pets}})
	wantError(t, err, CodeInvalidArgument, "collections.pets")
}

// twoSlotConfig has two slots that accept any item, to test copies per slot.
func twoSlotConfig(t testing.TB) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(`{
		"game": "Slots", "schemaVersion": 1,
		"items": {"potion": {"stackable": true, "maxStack": 10}},
		"loadoutSlots": {"left": {"items": []}, "right": {"items": []}}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDecodeStateCopiesPerSlot(t *testing.T) {
	c := twoSlotConfig(t)
	loadout := map[string]any{"left": "potion", "right": "potion"}
	_, err := c.DecodeState(map[string]any{"items": map[string]any{"potion": int64(1)}, "loadout": loadout})
	wantError(t, err, CodeInvalidArgument, "loadout.right")
	if _, err := c.DecodeState(map[string]any{"items": map[string]any{"potion": int64(2)}, "loadout": loadout}); err != nil {
		t.Errorf("two copies in two slots: %v", err)
	}
}
