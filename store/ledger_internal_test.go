package store

import (
	"testing"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/save"
)

// TestLedgerDocRoundTrip checks that the ledger entry's decoder reads back
// every field its encoder writes, so no reader can fall out of step with
// the writer.
func TestLedgerDocRoundTrip(t *testing.T) {
	expected := int64(6)
	at := time.Date(2026, 3, 4, 5, 6, 7, 891000, time.UTC)
	tests := []struct {
		name string
		doc  ledgerDoc
	}{
		{name: "every field", doc: ledgerDoc{
			EntryID:         "0123456789abcdef0123456789abcdef01234567",
			UserID:          1234567890,
			Kind:            LedgerKindMutation,
			IdempotencyKey:  "key-1",
			RequestHash:     "hash",
			Actor:           save.Actor{Kind: save.ActorCompanion, ID: "uid-1"},
			JobID:           "job-1",
			Reason:          "support ticket 7",
			ExpectedVersion: &expected,
			Ops:             []any{map[string]any{"op": save.OpCurrencyAdd, "currency": "coins", "amount": int64(5)}},
			VersionBefore:   6,
			Version:         7,
			SchemaBefore:    2,
			SchemaVersion:   3,
			Changes: []save.Change{
				{Path: "currencies.coins", Old: int64(1), New: int64(6)},
				{Path: "settings.music", Old: nil, New: "on"},
			},
			ChangedPaths: []string{"currencies.coins", "settings.music"},
			CommittedAt:  at,
			Response:     `{"version":7}`,
			Outbox:       ledgerOutbox{Published: true, Invalidate: true, HolderJobID: "job-2"},
			ExpireAt:     at.Add(time.Hour),
		}},
		{name: "optional fields absent", doc: ledgerDoc{
			EntryID:      "0123456789abcdef0123456789abcdef01234567",
			UserID:       1,
			Kind:         LedgerKindMutation,
			Actor:        save.Actor{Kind: save.ActorServer, ID: "universe/1"},
			Ops:          []any{map[string]any{"op": save.OpXPAdd, "amount": int64(1)}},
			Version:      1,
			Changes:      []save.Change{},
			ChangedPaths: []string{},
			CommittedAt:  at,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, err := tt.doc.fields()
			if err != nil {
				t.Fatal(err)
			}
			got := ledgerDocIn(tt.doc.EntryID, &firestorepb.Document{Fields: fields})
			if diff := cmp.Diff(tt.doc, got); diff != "" {
				t.Errorf("decoded entry (-want +got):\n%s", diff)
			}
		})
	}
}
