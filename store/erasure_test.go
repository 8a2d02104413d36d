package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/firestoretest"
	"github.com/savesync/savesync/save"
	"github.com/savesync/savesync/store"
)

func TestErasePlayer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	project := firestoretest.Project(t)
	c := firestoretest.Dial(t, project)
	st := store.New(c.Firestore, c.GAPIC, project, firestoretest.GameConfig(t), store.Options{})
	const userID, other = 7301, 7302
	key := []byte("erasure-key")
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	apply(t, st, userID, server, "a", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 5})
	apply(t, st, userID, server, "b", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 5})
	apply(t, st, other, server, "a", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 5})
	code, err := st.CreateLinkCode(ctx, "uid-erased")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RedeemLinkCode(ctx, code.Code, userID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateLinkCode(ctx, "uid-kept"); err != nil {
		t.Fatal(err)
	}

	req := store.ErasureRequest{UserID: userID, Source: store.ErasureSourceRoblox, Requester: "roblox", RequestID: "notif-1"}
	first, err := st.ErasePlayer(ctx, key, req)
	if err != nil {
		t.Fatal(err)
	}
	want := store.ErasedCounts{Players: 1, LedgerEntries: 2, Links: 1, LinkCodes: 1}
	if diff := cmp.Diff(want, first.Deleted); diff != "" || first.AlreadyErased {
		t.Errorf("first erasure deleted (-want +got):\n%s (alreadyErased %v)", diff, first.AlreadyErased)
	}
	if diff := cmp.Diff([]string{"uid-erased"}, first.OwnerUIDs); diff != "" {
		t.Errorf("owner uids (-want +got):\n%s", diff)
	}

	for _, path := range []string{"players/7301", "links/uid-erased", "linkCodes/" + code.Code} {
		if snap, err := c.Firestore.Doc(path).Get(ctx); err == nil && snap.Exists() {
			t.Errorf("%s survived the erasure", path)
		}
	}
	if docs, err := c.Firestore.Collection("players/7301/ledger").Documents(ctx).GetAll(); err != nil || len(docs) != 0 {
		t.Errorf("ledger after erasure: %d entries, %v", len(docs), err)
	}
	if p, err := st.GetPlayer(ctx, other); err != nil || p.Version != 1 {
		t.Errorf("another player = %+v, %v; want untouched at version 1", p, err)
	}
	if _, ok, err := st.LinkOf(ctx, "uid-kept"); err != nil || ok {
		t.Errorf("LinkOf(uid-kept) = %v, %v", ok, err)
	}

	again, err := st.ErasePlayer(ctx, key, req)
	if err != nil || !again.AlreadyErased || again.Deleted != (store.ErasedCounts{}) || !again.ErasedAt.Equal(first.ErasedAt) {
		t.Errorf("second delivery = %+v, %v; want already erased, nothing deleted", again, err)
	}
	admin, err := st.ErasePlayer(ctx, key, store.ErasureRequest{UserID: userID, Source: store.ErasureSourceAdmin, Requester: "uid-op"})
	if err != nil || !admin.AlreadyErased || admin.Deleted != (store.ErasedCounts{}) {
		t.Errorf("admin erasure of an erased player = %+v, %v", admin, err)
	}

	rec, err := c.Firestore.Doc("erasures/" + store.ErasureRecordID(key, userID)).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	requests, _ := rec.Data()["requests"].([]any)
	if len(requests) != 1 {
		t.Errorf("erasure record lists %d requests, want 1: %v", len(requests), requests)
	}
	if strings.Contains(rec.Ref.ID, "7301") || strings.Contains(fmt.Sprint(rec.Data()), "7301") {
		t.Errorf("erasure record %s mentions the user id: %v", rec.Ref.ID, rec.Data())
	}
	if store.ErasureRecordID(key, userID) == store.ErasureRecordID([]byte("other"), userID) {
		t.Error("the record id does not depend on the key")
	}

	if _, err := st.ErasePlayer(ctx, key, store.ErasureRequest{UserID: 0, Source: store.ErasureSourceAdmin}); save.ErrorCode(err) != save.CodeInvalidArgument {
		t.Errorf("ErasePlayer(0) = %v, want INVALID_ARGUMENT", err)
	}
}

func TestErasePlayerConcurrentDeliveriesEraseOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := firestoretest.Store(t, store.Options{})
	const userID, deliveries = 7401, 50
	key := []byte("erasure-key")
	apply(t, st, userID, save.Actor{Kind: save.ActorServer, ID: "universe/1"}, "a", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 5})

	req := store.ErasureRequest{UserID: userID, Source: store.ErasureSourceRoblox, Requester: "roblox", RequestID: "notif-concurrent"}
	outs := make([]store.Erasure, deliveries)
	errs := make([]error, deliveries)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = st.ErasePlayer(ctx, key, req)
		}()
	}
	wg.Wait()
	erasers := 0
	for i, out := range outs {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if !out.AlreadyErased {
			erasers++
			if out.Deleted != (store.ErasedCounts{Players: 1, LedgerEntries: 1}) {
				t.Errorf("the eraser deleted %+v", out.Deleted)
			}
		} else if out.Deleted != (store.ErasedCounts{}) || out.Replayed {
			t.Errorf("duplicate %d = %+v, want nothing deleted and no replay", i, out)
		}
	}
	if erasers != 1 {
		t.Errorf("%d of %d deliveries erased, want exactly 1", erasers, deliveries)
	}
}

func TestErasePlayerScopesAdminKeysByAdmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := firestoretest.Store(t, store.Options{})
	const userID = 7501
	key := []byte("erasure-key")
	server := save.Actor{Kind: save.ActorServer, ID: "universe/1"}
	apply(t, st, userID, server, "a", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 5})
	byA := store.ErasureRequest{UserID: userID, Source: store.ErasureSourceAdmin, Requester: "uid-admin-a", RequestID: "K"}
	byB := byA
	byB.Requester = "uid-admin-b"

	first, err := st.ErasePlayer(ctx, key, byA)
	if err != nil || first.AlreadyErased || first.Replayed {
		t.Fatalf("admin A = %+v, %v; want the eraser", first, err)
	}
	apply(t, st, userID, server, "b", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 7})
	second, err := st.ErasePlayer(ctx, key, byB)
	if err != nil || second.AlreadyErased || second.Replayed || second.Deleted != (store.ErasedCounts{Players: 1, LedgerEntries: 1}) {
		t.Errorf("admin B with A's key = %+v, %v; want the new data erased", second, err)
	}
	replay, err := st.ErasePlayer(ctx, key, byA)
	first.Replayed = true
	if diff := cmp.Diff(first, replay); err != nil || diff != "" {
		t.Errorf("admin A again: %v (-want +got):\n%s", err, diff)
	}
	// The same id from the webhook is Roblox's, not an admin's.
	apply(t, st, userID, server, "c", save.Op{Kind: save.OpCurrencyAdd, Currency: "coins", Amount: 9})
	hook, err := st.ErasePlayer(ctx, key, store.ErasureRequest{UserID: userID, Source: store.ErasureSourceRoblox, Requester: "roblox", RequestID: "K"})
	if err != nil || hook.AlreadyErased {
		t.Errorf("webhook with the id K = %+v, %v; want the eraser", hook, err)
	}
}
