package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

// newAuditStore is a store on a fresh emulator project with a fake clock.
func newAuditStore(t *testing.T) (*store.Store, *firestoretest.Clock) {
	t.Helper()
	clock := firestoretest.NewClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	st, _ := firestoretest.Store(t, store.Options{Now: clock.Now})
	return st, clock
}

// apply commits one mutation and fails the test on error.
func apply(t *testing.T, st *store.Store, userID int64, actor save.Actor, key string, ops ...save.Op) save.Outcome {
	t.Helper()
	res, err := st.ApplyMutation(context.Background(), store.MutationRequest{UserID: userID, Actor: actor, IdempotencyKey: key, Mutation: save.Mutation{Ops: ops}})
	if err != nil {
		t.Fatalf("ApplyMutation(%s): %v", key, err)
	}
	return res.Outcome
}

func TestSearchLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, clock := newAuditStore(t)
	const userID = 7001
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	fan := save.Actor{Kind: save.ActorCompanion, ID: "uid-a"}
	coins := save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 100}
	// Versions 1..6, one a month: server, fan purchase, server, fan, server, fan purchase.
	for i := 1; i <= 6; i++ {
		if i%2 == 1 {
			apply(t, st, userID, server, fmt.Sprintf("s%d", i), coins)
		} else {
			apply(t, st, userID, fan, fmt.Sprintf("f%d", i), save.Op{Kind: save.OpPurchase, SKU: "starter"})
		}
		clock.Advance(31 * 24 * time.Hour)
	}
	month := func(n int) time.Time {
		return time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC).Add(time.Duration(n) * 31 * 24 * time.Hour)
	}

	tests := []struct {
		name string
		q    store.AuditQuery
		want []int64
	}{
		{"everything", store.AuditQuery{}, []int64{6, 5, 4, 3, 2, 1}},
		{"time range", store.AuditQuery{From: month(1), To: month(4)}, []int64{4, 3, 2}},
		{"actor kind", store.AuditQuery{ActorKind: save.ActorCompanion}, []int64{6, 4, 2}},
		{"actor kind and id", store.AuditQuery{ActorKind: save.ActorServer, ActorID: "universe/1"}, []int64{5, 3, 1}},
		{"actor id", store.AuditQuery{ActorID: "uid-a", From: month(2)}, []int64{6, 4}},
		{"op", store.AuditQuery{Op: save.OpPurchase, To: month(5)}, []int64{4, 2}},
		{"idempotency key", store.AuditQuery{IdempotencyKey: "s3"}, []int64{3}},
		{"key and other actor", store.AuditQuery{IdempotencyKey: "s3", ActorKind: save.ActorCompanion}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int64
			q := tt.q
			q.Limit = 2
			for range 10 {
				page, err := st.SearchLedger(ctx, userID, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range page.Entries {
					got = append(got, e.Version)
				}
				if page.NextCursor == "" {
					break
				}
				q.Cursor = page.NextCursor
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("versions (-want +got):\n%s", diff)
			}
		})
	}

	page, err := st.SearchLedger(ctx, userID, store.AuditQuery{IdempotencyKey: "f2"})
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("search by key f2 = %+v, %v", page, err)
	}
	e := page.Entries[0]
	if e.Actor != fan || e.IdempotencyKey != "f2" || e.Version != 2 || !e.CommittedAt.Equal(month(1)) {
		t.Errorf("entry = %+v, want version 2 by %v at %v", e, fan, month(1))
	}
}

func TestSearchLedgerRefusals(t *testing.T) {
	t.Parallel()
	st, _ := newAuditStore(t)
	now := time.Now()
	tests := []struct {
		name string
		q    store.AuditQuery
	}{
		{"limit", store.AuditQuery{Limit: store.MaxLedgerPage + 1}},
		{"range", store.AuditQuery{From: now, To: now.Add(-time.Hour)}},
		{"actor kind", store.AuditQuery{ActorKind: "robot"}},
		{"op", store.AuditQuery{Op: "coins.steal"}},
		{"cursor", store.AuditQuery{Cursor: "not-a-cursor"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.SearchLedger(context.Background(), 1, tt.q)
			if save.ErrorCode(err) != save.CodeInvalidArgument {
				t.Fatalf("SearchLedger = %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}
