package handlers

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzCheckBodyText checks the body scanner against what can be known
// without it: it never panics; a valid JSON document that is valid UTF-8
// and has no \u escape carries nothing to refuse; one that is not valid
// UTF-8 always does (in valid JSON, such bytes can only be inside
// strings); and a refusal always names where it was.
func FuzzCheckBodyText(f *testing.F) {
	for _, seed := range []string{
		`{"ops":[{"op":"currency.add","currency":"coins","amount":1}]}`,
		`{"a":"\ud83d\ude00","b":["x",1,true,null,{"c":"\u0000"}]}`,
		`{"a":"\ud800"}`, `["\udc00"]`, `{"\u0000":1}`, "{\"a\":\"\xff\"}", `"\ud83d\u0041"`,
		` [ 1 , -2.5e3 , "\\\"\/\b\f\n\r\t" ] `, `{}`, `[]`, `0`, `""`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := checkBodyText(body, "")
		if !json.Valid(body) {
			if err != nil {
				t.Fatalf("checkBodyText(%q) = %v for a body that is not JSON, want nil (the decoder explains)", body, err)
			}
			return
		}
		if utf8.Valid(body) && !bytes.Contains(body, []byte(`\u`)) && err != nil {
			t.Fatalf("checkBodyText(%q) = %v, want nil for plain UTF-8 JSON", body, err)
		}
		if !utf8.Valid(body) && err == nil {
			t.Fatalf("checkBodyText(%q) = nil, want a refusal of the invalid UTF-8", body)
		}
		if err != nil {
			if e := toDomainError(t.Context(), err); e.Details["in"] != inBody {
				t.Fatalf("checkBodyText(%q) = %v without details.in = body", body, err)
			}
		}
	})
}
