package save

import (
	"encoding/json"
	"testing"
)

func TestEncodedSizeMatchesJSON(t *testing.T) {
	c := sampleConfig(t)
	tests := []struct {
		name string
		st   func() State
	}{
		{"new", func() State { return c.NewState() }},
		{"rich", func() State { return richState(t, c) }},
		{"escapes and numbers", func() State {
			s := richState(t, c)
			s.Settings["language"] = "<\"\\\n\t\x01&>\u2028é日本\xff"
			s.Settings["volume"] = 0.1 + 0.2
			s.Settings["big"] = 1e21
			s.Collections["pets"]["tab\there"] = []Dot{{Version: 1, Actor: "<&>"}, {Version: 1 << 62, Actor: ""}}
			s.Currencies["neg"] = -9223372036854775808
			return s
		}},
		{"empty maps", func() State {
			return State{Currencies: map[string]int64{}, Stats: map[string]int64{}, Items: map[string]int64{},
				Loadout: map[string]string{}, Settings: map[string]any{}, Collections: map[string]map[string][]Dot{"a": {}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.st()
			data, err := json.Marshal(st.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if got := encodedSize(st); got != len(data) {
				t.Errorf("encodedSize = %d, want %d (%s)", got, len(data), data)
			}
		})
	}
}
