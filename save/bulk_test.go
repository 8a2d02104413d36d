package save_test

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/save"
)

// bulkConfig loads the shipped sample game config.
func bulkConfig(t *testing.T) *save.Config {
	t.Helper()
	c, err := save.LoadConfig("../config/sample-game.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExprEvaluates(t *testing.T) {
	vars := map[string]int64{"held": 40, "granted": 100}
	cases := []struct {
		text string
		want int64
		code save.Code
	}{
		{text: "7", want: 7},
		{text: "-min(granted, held)", want: -40},
		{text: "min(granted, held)", want: 40},
		{text: "max(held - 50, 0)", want: 0},
		{text: "2 * (held + 1) - -3", want: 85},
		{text: "-granted*2", want: -200},
		{text: " held ", want: 40},
		{text: "9223372036854775807 + 1", code: save.CodeLimitExceeded},
		{text: "held * 9223372036854775807", code: save.CodeLimitExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			e, err := save.ParseExpr(tc.text)
			if err != nil {
				t.Fatalf("ParseExpr: %v", err)
			}
			got, err := e.Eval(vars)
			if save.ErrorCode(err) != tc.code || got != tc.want {
				t.Errorf("Eval = %d, %v; want %d, code %q", got, err, tc.want, tc.code)
			}
		})
	}
}

func TestExprRefusesBadText(t *testing.T) {
	for _, text := range []string{"", "held +", "min(held)", "min(held, 1", "coins", "1e3", "held / 2", "(held", "99999999999999999999", "held held"} {
		t.Run(text, func(t *testing.T) {
			if _, err := save.ParseExpr(text); save.ErrorCode(err) != save.CodeInvalidArgument {
				t.Errorf("ParseExpr(%q) = %v, want INVALID_ARGUMENT", text, err)
			}
		})
	}
}

func TestPlanBulkOps(t *testing.T) {
	cfg := bulkConfig(t)
	ops, err := cfg.DecodeBulkOps([]byte(`[
		{"op":"currency.add","currency":"coins","amount":"-min(granted, held)"},
		{"op":"item.consume","item":"wood","count":"min(granted, held)"},
		{"op":"xp.add","amount":5}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	st := cfg.NewState()
	st.Currencies["coins"] = 30
	got, err := cfg.PlanBulkOps(ops, st, 50)
	if err != nil {
		t.Fatal(err)
	}
	// No wood held: the consume comes to 0 and is left out.
	want := []save.Op{
		{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: -30},
		{Kind: save.OpXPAdd, Amount: 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("planned ops (-want +got):\n%s", diff)
	}
	if _, err := cfg.PlanBulkOps(ops, st, math.MaxInt64); err != nil {
		t.Errorf("granted beyond what is held: %v, want the held amount", err)
	}
}

func TestDecodeBulkOpsRefuses(t *testing.T) {
	cfg := bulkConfig(t)
	cases := map[string]save.Code{
		`[{"op":"save.replace","save":{}}]`:                           save.CodePermissionDenied,
		`[{"op":"inventory.swap","add":{"wood":1}}]`:                  save.CodePermissionDenied,
		`[{"op":"purchase","sku":"starterPack"}]`:                     save.CodePermissionDenied,
		`[{"op":"currency.add","currency":"coins","amount":"held+"}]`: save.CodeInvalidArgument,
		`[{"op":"currency.add","currency":"nope","amount":1}]`:        save.CodeInvalidArgument,
		`[{"op":"currency.add","currency":"coins","amount":1,"x":1}]`: save.CodeInvalidArgument,
		`{"op":"xp.add"}`: save.CodeInvalidArgument,
		`[]`:              save.CodeInvalidArgument,
	}
	for raw, want := range cases {
		t.Run(raw, func(t *testing.T) {
			if _, err := cfg.DecodeBulkOps([]byte(raw)); save.ErrorCode(err) != want {
				t.Errorf("DecodeBulkOps = %v, want %s", err, want)
			}
		})
	}
}
