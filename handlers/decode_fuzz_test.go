package handlers

import (
	"testing"
	"unicode/utf8"

	"github.com/savesync/savesync/save"
)

// FuzzDecodeJSON feeds the strict body decoder of the handlers every body
// type it decodes: it never panics, refuses with INVALID_ARGUMENT and a
// message, and what it accepts holds valid UTF-8 only (encoding/json
// replaces what is not, so nothing invalid reaches Firestore from a body).
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"userId":77,"jobId":"job-1","placeId":1,"schemaVersion":3,"steal":true}`,
		`{"final":{"ops":[{"op":"xp.add","amount":1}]}}`,
		`{"sessionIds":["77.1.abc"]}`,
		`{"mutations":[{"userId":77,"idempotencyKey":"k","mutation":{"ops":[]}}]}`,
		`{"userId":77}`, `{"sku":"speedPotions","price":{"gems":0}}`, `{"value":true}`, `{"element":"e"}`,
		`{"reason":"r","ticket":"T-1","ops":[{"op":"xp.add","amount":1}]}`, `{"reason":"r","ticket":"T","refundEntryId":"x"}`,
		`{"version":0,"reason":"r","ticket":"T"}`,
		`{"userId":"abc"}`, `{"userId":9223372036854775808}`, `{"jobId":"\ud800"}`, "{\"jobId\":\"\xff\"}",
		`{"sessionIds":{}}`, `{"mutations":[[]]}`, `{} {}`, `{"userId":1,"userId":2}`, `{`, ``, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	targets := func() []any {
		return []any{&joinBody{}, &leaveBody{}, &renewBatchBody{}, &batchBody{}, &redeemBody{}, &purchaseBody{},
			&settingBody{}, &collectionBody{}, &compensationBody{}, &restoreBody{}}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range targets() {
			err := decodeJSON(body, v)
			if err != nil {
				if e, ok := save.AsError(err); !ok || e.Code != save.CodeInvalidArgument || e.Message == "" {
					t.Fatalf("decodeJSON(%q, %T) = %v, want INVALID_ARGUMENT with a message", body, v, err)
				}
				continue
			}
			if s := stringsOf(v); !utf8.ValidString(s) {
				t.Fatalf("decodeJSON(%q, %T) accepted invalid UTF-8: %q", body, v, s)
			}
		}
	})
}

// stringsOf joins the string fields the body types carry to the store.
func stringsOf(v any) string {
	switch b := v.(type) {
	case *joinBody:
		return b.JobID
	case *renewBatchBody:
		s := ""
		for _, id := range b.SessionIDs {
			s += id
		}
		return s
	case *batchBody:
		// The items stay raw here; decodeBatchItem decodes and checks
		// each one on its own.
		return ""
	case *purchaseBody:
		return b.SKU
	case *collectionBody:
		return b.Element
	case *compensationBody:
		return b.Reason + b.Ticket + b.RefundEntryID
	case *restoreBody:
		return b.Reason + b.Ticket
	}
	return ""
}
