package save

import (
	"fmt"
	"testing"
)

// benchState is a mid-game save: balances, a few dozen items and badges.
func benchState(b *testing.B, c *Config) State {
	b.Helper()
	st := c.NewState()
	st.Currencies["coins"], st.Currencies["gems"] = 5_000_000, 900
	st.Stats["xp"], st.Stats["level"] = 250_000, 42
	st.Items["wood"], st.Items["steel"], st.Items["speedPotion"] = 5000, 1200, 12
	st.Items["goldenHammer"], st.Items["neonHat"] = 1, 1
	st.Loadout["tool"], st.Loadout["hat"] = "goldenHammer", "neonHat"
	for i := 0; i < 40; i++ {
		st.Collections["badges"][fmt.Sprintf("badge_%02d", i)] = []Dot{{Version: int64(i + 1), Actor: "job-1"}}
	}
	for i := 0; i < 10; i++ {
		st.Collections["pets"][fmt.Sprintf("pet_%d", i)] = []Dot{{Version: int64(i + 1), Actor: "uid-1"}}
	}
	return st
}

func BenchmarkApplyTypicalMutation(b *testing.B) {
	c := sampleConfig(b)
	st := benchState(b, c)
	m := Mutation{Ops: []Op{
		{Kind: OpCurrencyAdd, Currency: "coins", Amount: 1250},
		{Kind: OpXPAdd, Amount: 40},
		{Kind: OpItemGrant, Item: "wood", Count: 25},
		{Kind: OpItemConsume, Item: "steel", Count: 3},
		{Kind: OpCollectionAdd, Collection: "badges", Element: "harbor_master"},
	}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Apply(st, 100, m, server); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyPurchase(b *testing.B) {
	c := sampleConfig(b)
	st := benchState(b, c)
	m := Mutation{Ops: []Op{{Kind: OpPurchase, SKU: "starterPack"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Apply(st, 100, m, companion); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMigrateV1ToV3(b *testing.B) {
	c := sampleConfig(b)
	raw := map[string]any{
		"coins":     float64(125000),
		"gems":      int64(40),
		"xp":        "98000",
		"inventory": map[string]any{"wood": int64(400), "steel": int64(20), "pirateHat": int64(1)},
		"musicOn":   false,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LoadState(raw, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEncodeRoundTrip(b *testing.B) {
	c := sampleConfig(b)
	raw := benchState(b, c).Encode()
	b.ReportAllocs()
	for b.Loop() {
		st, err := c.DecodeState(raw)
		if err != nil {
			b.Fatal(err)
		}
		raw = st.Encode()
	}
}

func BenchmarkDecodeMutation(b *testing.B) {
	body := []byte(`{"expectedVersion":12,"ops":[{"op":"currency.add","currency":"coins","amount":1250},{"op":"xp.add","amount":40},{"op":"item.grant","item":"wood","count":25},{"op":"collection.add","collection":"badges","element":"harbor_master"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMutation(body); err != nil {
			b.Fatal(err)
		}
	}
}
