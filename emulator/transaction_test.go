package emulator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPlainWriteWaitsForTransactionLock(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	g := newGAPIC(t)
	defer g.Close()
	doc := c.Doc("w/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	bt, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: dbPath(p)})
	if err != nil {
		t.Fatal(err)
	}
	name := dbPath(p) + "/documents/w/a"
	st, err := g.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{Database: dbPath(p), Documents: []string{name}, ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_Transaction{Transaction: bt.Transaction}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := doc.Set(ctx, map[string]any{"n": int64(100)})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("plain write finished (%v) while a transaction held the document", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: bt.Transaction, Writes: []*firestorepb.Write{{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{"n": {ValueType: &firestorepb.Value_IntegerValue{IntegerValue: 2}}}}},
	}}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("plain write: %v", err)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := snap.DataAt("n"); n != int64(100) {
		t.Errorf("n = %v, want 100 (the plain write after the transaction)", n)
	}
}

func TestTransactionRollbackAndReuse(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	doc := c.Doc("rb/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(doc); err != nil {
			return err
		}
		if err := tx.Set(doc, map[string]any{"n": int64(2)}); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("RunTransaction: %v, want boom", err)
	}
	// The rollback released the lock: a plain write goes through at once.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := doc.Set(wctx, map[string]any{"n": int64(3)}); err != nil {
		t.Fatalf("Set after rollback: %v", err)
	}
	g := newGAPIC(t)
	defer g.Close()
	bt, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: dbPath(p)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Rollback(ctx, &firestorepb.RollbackRequest{Database: dbPath(p), Transaction: bt.Transaction}); err != nil {
		t.Fatal(err)
	}
	_, err = g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: bt.Transaction})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("commit of rolled-back transaction: %v, want InvalidArgument", err)
	}
	_, err = g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: []byte("0123456789abcdef")})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("commit of unknown transaction: %v, want InvalidArgument", err)
	}
}

func TestReadOnlyTransaction(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	doc := c.Doc("ro/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	g := newGAPIC(t)
	defer g.Close()
	bt, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: dbPath(p), Options: &firestorepb.TransactionOptions{
		Mode: &firestorepb.TransactionOptions_ReadOnly_{ReadOnly: &firestorepb.TransactionOptions_ReadOnly{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: bt.Transaction, Writes: []*firestorepb.Write{{
		Operation: &firestorepb.Write_Delete{Delete: dbPath(p) + "/documents/ro/a"},
	}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("write in read-only transaction: %v, want InvalidArgument", err)
	}
	// A read-only transaction reads its start snapshot and blocks no writer.
	var seen []int64
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		for i := 0; i < 2; i++ {
			snap, err := tx.Get(doc)
			if err != nil {
				return err
			}
			n, _ := snap.DataAt("n")
			seen = append(seen, n.(int64))
			if i == 0 {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := doc.Set(wctx, map[string]any{"n": int64(7)})
				cancel()
				if err != nil {
					return err
				}
			}
		}
		return nil
	}, firestore.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if seen[0] != 1 || seen[1] != 1 {
		t.Errorf("read-only transaction saw %v, want [1 1]", seen)
	}
}

func TestNewTransactionInlineWithRead(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	g := newGAPIC(t)
	defer g.Close()
	name := dbPath(p) + "/documents/inline/a"
	if _, err := c.Doc("inline/a").Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	before := testSrv.Counters(p)
	st, err := g.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{
		Database:            dbPath(p),
		Documents:           []string{name},
		ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_NewTransaction{NewTransaction: &firestorepb.TransactionOptions{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Transaction) == 0 {
		t.Fatal("first response carries no transaction id")
	}
	if resp.GetFound().GetFields()["n"].GetIntegerValue() != 1 {
		t.Fatalf("found %v, want n=1", resp.GetFound())
	}
	_, err = g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: resp.Transaction, Writes: []*firestorepb.Write{{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{"n": {ValueType: &firestorepb.Value_IntegerValue{IntegerValue: 2}}}}},
	}}})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	after := testSrv.Counters(p)
	for _, m := range []string{"BatchGetDocuments", "Commit", "BeginTransaction"} {
		want := int64(1)
		if m == "BeginTransaction" {
			want = 0
		}
		if got := after.RPCs[m] - before.RPCs[m]; got != want {
			t.Errorf("%s calls = %d, want %d", m, got, want)
		}
	}
}

func TestIdleTransactionExpires(t *testing.T) {
	srv, err := Start(Options{TransactionIdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p := testProject(t)
	c := newClientFor(t, srv, p)
	ctx := context.Background()
	doc := c.Doc("idle/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		attempts++
		if _, err := tx.Get(doc); err != nil {
			return err
		}
		// Idle past the limit: the lock goes, a plain write gets through.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := doc.Set(wctx, map[string]any{"n": int64(10)}); err != nil {
			return err
		}
		return tx.Update(doc, []firestore.Update{{Path: "n", Value: firestore.Increment(1)}})
	}, firestore.MaxAttempts(3))
	// Like Cloud Firestore, an expired transaction is INVALID_ARGUMENT,
	// which the client does not retry.
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "expired or is no longer valid") {
		t.Fatalf("RunTransaction: %v, want InvalidArgument (transaction expired)", err)
	}
	if attempts != 1 {
		t.Errorf("attempts = %d, want 1 (an expired transaction is not retried)", attempts)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := snap.DataAt("n"); n != int64(10) {
		t.Errorf("n = %v, want 10 (the expired transaction wrote nothing)", n)
	}
	if a := srv.Counters(p).Aborts; a != 1 {
		t.Errorf("aborts = %d, want 1", a)
	}
}
