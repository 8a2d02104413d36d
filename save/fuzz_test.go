package save

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// decodeSeeds are mutation bodies the decoder fuzz targets start from:
// valid ones of every op kind and the edges the decoder guards.
var decodeSeeds = []string{
	`{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}`,
	`{"expectedVersion":3,"reason":"r","ops":[{"op":"loadout.set","slot":"tool","item":"goldenHammer"}]}`,
	`{"ops":[{"op":"settings.set","key":"volume","value":40},{"op":"settings.set","key":"music","value":false}]}`,
	`{"ops":[{"op":"inventory.swap","remove":{"wood":10},"add":{"steel":1}}],"expectedVersion":0}`,
	`{"ops":[{"op":"collection.add","collection":"wishlist","element":"e"},{"op":"collection.remove","collection":"wishlist","element":"e","observedVersion":1}]}`,
	`{"ops":[{"op":"save.replace","save":{"currencies":{"coins":5}}}],"expectedVersion":1}`,
	`{"ops":[{"op":"purchase","sku":"speedPotions"}]}`,
	`{"ops":[{"op":"item.grant","item":"wood","count":9223372036854775807}]}`,
	`{"ops":[{"op":"xp.add","amount":-9223372036854775808}]}`,
	`{"ops":[{"op":"stat.add","stat":"level","amount":1e19}]}`,
	`{"ops":[{"op":"settings.set","key":"language","value":"\ud800"}]}`,
	"{\"ops\":[{\"op\":\"settings.set\",\"key\":\"\xff\",\"value\":1}]}",
	`{"ops":[],"ops":[]}`,
	`{"ops":[{"op":"currency.add","currency":"coins","amount":5}]}{}`,
	`{"ops":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"ops":{}}`, `[]`, `null`, ``, `{"ops":[{"op":"currency.add","currency":"coins","amount":5`,
}

// FuzzDecodeMutation feeds DecodeMutation arbitrary bytes: it never
// panics, refuses with INVALID_ARGUMENT and a message, and what it
// accepts holds only valid UTF-8 and passes CheckMutation and Apply
// without panicking, refusing only with documented codes.
func FuzzDecodeMutation(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	c := sampleConfig(f)
	documented := map[Code]bool{
		CodeInvalidArgument: true, CodePermissionDenied: true, CodeNotFound: true, CodeVersionConflict: true,
		CodeInsufficientFunds: true, CodeLimitExceeded: true,
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeMutation(body)
		if err != nil {
			e, ok := AsError(err)
			if !ok || e.Code != CodeInvalidArgument || e.Message == "" {
				t.Fatalf("DecodeMutation(%q) = %v, want INVALID_ARGUMENT with a message", body, err)
			}
			return
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("the decoded mutation cannot be encoded again: %v", err)
		}
		if !utf8.Valid(raw) || !validStrings(m) {
			t.Fatalf("DecodeMutation(%q) accepted strings that are not valid UTF-8: %s", body, raw)
		}
		for _, kind := range []ActorKind{ActorServer, ActorCompanion, ActorAdmin} {
			if err := c.CheckMutation(m, kind); err != nil {
				if e, ok := AsError(err); !ok || !documented[e.Code] || e.Message == "" {
					t.Fatalf("CheckMutation(%s, %s) = %v, want a documented code", raw, kind, err)
				}
				continue
			}
			if _, err := c.Apply(c.NewState(), 0, m, Actor{Kind: kind, ID: "fuzz"}); err != nil {
				if e, ok := AsError(err); !ok || !documented[e.Code] || e.Message == "" {
					t.Fatalf("Apply(%s, %s) = %v, want a documented code", raw, kind, err)
				}
			}
		}
	})
}

// validStrings reports whether every string of m, keys included, is
// valid UTF-8 (Firestore refuses anything else).
func validStrings(m Mutation) bool {
	ok := utf8.ValidString(m.Reason)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			ok = ok && utf8.ValidString(x)
		case map[string]any:
			for k, e := range x {
				ok = ok && utf8.ValidString(k)
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, op := range m.Ops {
		for _, s := range []string{op.Kind, op.Currency, op.Stat, op.Item, op.Slot, op.Key, op.Collection, op.Element, op.SKU} {
			ok = ok && utf8.ValidString(s)
		}
		for k := range op.Remove {
			ok = ok && utf8.ValidString(k)
		}
		for k := range op.Add {
			ok = ok && utf8.ValidString(k)
		}
		walk(op.Value)
		walk(op.Save)
	}
	return ok
}

// FuzzDecodeStrictJSON checks the strict tree decoder the ops go through:
// it never panics, refuses with INVALID_ARGUMENT, and accepts only what
// encoding/json also accepts.
func FuzzDecodeStrictJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := decodeStrictJSON(body)
		if err != nil {
			if e, ok := AsError(err); !ok || e.Code != CodeInvalidArgument {
				t.Fatalf("decodeStrictJSON(%q) = %v, want INVALID_ARGUMENT", body, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("decodeStrictJSON accepted %q, which is not JSON", body)
		}
	})
}
