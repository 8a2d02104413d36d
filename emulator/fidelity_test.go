package emulator

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wantCode fails the test when err does not carry code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// readWriteRetry is the options of a read-write transaction retrying prev.
func readWriteRetry(prev []byte) *firestorepb.TransactionOptions {
	return &firestorepb.TransactionOptions{Mode: &firestorepb.TransactionOptions_ReadWrite_{
		ReadWrite: &firestorepb.TransactionOptions_ReadWrite{RetryTransaction: prev},
	}}
}

func TestNoLongerValidTransactionsAreInvalidArgument(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	g := newGAPIC(t)
	defer g.Close()
	db := dbPath(p)
	name := db + "/documents/valid/a"
	if _, err := c.Doc("valid/a").Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	begin := func(opts *firestorepb.TransactionOptions) []byte {
		t.Helper()
		bt, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: db, Options: opts})
		if err != nil {
			t.Fatalf("BeginTransaction: %v", err)
		}
		return bt.Transaction
	}
	getIn := func(tx []byte) error {
		st, err := g.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{
			Database: db, Documents: []string{name},
			ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_Transaction{Transaction: tx},
		})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}

	committed := begin(nil)
	if _, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: db, Transaction: committed}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	rolledBack := begin(nil)
	if err := g.Rollback(ctx, &firestorepb.RollbackRequest{Database: db, Transaction: rolledBack}); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	replaced := begin(nil)
	begin(readWriteRetry(replaced))
	unknown := []byte("0123456789abcdef")

	for _, tc := range []struct {
		name string
		id   []byte
	}{{"committed", committed}, {"rolled back", rolledBack}, {"replaced by a retry", replaced}, {"unknown", unknown}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: db, Transaction: tc.id})
			wantCode(t, "Commit", err, codes.InvalidArgument)
			if err != nil && !strings.Contains(err.Error(), "The referenced transaction has expired or is no longer valid.") {
				t.Errorf("Commit: message %q lacks Firestore's wording", err)
			}
			wantCode(t, "BatchGetDocuments", getIn(tc.id), codes.InvalidArgument)
		})
	}

	// retry_transaction is only a hint: naming any old id starts a new
	// transaction, inline with a read too.
	for _, tc := range []struct {
		name string
		id   []byte
	}{{"committed", committed}, {"rolled back", rolledBack}, {"replaced by a retry", replaced}, {"unknown", unknown}} {
		t.Run("retry of "+tc.name, func(t *testing.T) {
			id := begin(readWriteRetry(tc.id))
			if _, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: db, Transaction: id}); err != nil {
				t.Errorf("Commit of BeginTransaction retrying %s: %v", tc.name, err)
			}
			st, err := g.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{
				Database: db, Documents: []string{name},
				ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_NewTransaction{NewTransaction: readWriteRetry(tc.id)},
			})
			if err != nil {
				t.Fatalf("BatchGetDocuments: %v", err)
			}
			resp, err := st.Recv()
			if err != nil {
				t.Fatalf("BatchGetDocuments new_transaction retrying %s: %v", tc.name, err)
			}
			if len(resp.Transaction) == 0 {
				t.Fatal("no transaction id in the first response")
			}
			if _, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: db, Transaction: resp.Transaction}); err != nil {
				t.Errorf("Commit of inline transaction: %v", err)
			}
		})
	}
}

func TestResetProjectAbortsOpenTransactions(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	doc := c.Doc("reset/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		attempts++
		if _, err := tx.Get(doc); err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		if attempts == 1 {
			testSrv.ResetProject(p)
		}
		return tx.Set(doc, map[string]any{"n": int64(attempts)})
	}, firestore.MaxAttempts(3))
	if err != nil {
		t.Fatalf("RunTransaction: %v (a reset is ABORTED, so the client retries)", err)
	}
	if attempts != 2 {
		t.Errorf("attempts = %d, want 2", attempts)
	}
}

func TestTransactionMaxLifetime(t *testing.T) {
	srv, err := Start(Options{TransactionIdleTimeout: 10 * time.Second, TransactionMaxLifetime: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := newClientFor(t, srv, testProject(t))
	ctx := context.Background()
	doc := c.Doc("life/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	attempts, reads := 0, 0
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		attempts++
		// Never idle, but open for longer than the limit.
		for range 100 {
			if _, err := tx.Get(doc); err != nil {
				return err
			}
			reads++
			time.Sleep(20 * time.Millisecond)
		}
		return tx.Set(doc, map[string]any{"n": int64(2)})
	}, firestore.MaxAttempts(3))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "expired or is no longer valid") {
		t.Fatalf("RunTransaction: %v, want InvalidArgument (transaction expired)", err)
	}
	if attempts != 1 {
		t.Errorf("attempts = %d, want 1", attempts)
	}
	if reads < 5 || reads >= 100 {
		t.Errorf("reads before expiry = %d, want a few (expiry after 300 ms of 20 ms reads)", reads)
	}
	// The expired transaction's lock is gone.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := doc.Set(wctx, map[string]any{"n": int64(3)}); err != nil {
		t.Fatalf("Set after expiry: %v", err)
	}
}

func TestRequestSizeLimit(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	big := strings.Repeat("x", 960_000)
	//lint:ignore SA1019 a write batch is one Commit request, which is what this measures
	batch := func(n int) *firestore.WriteBatch {
		b := c.Batch() //lint:ignore SA1019 as above
		for i := range n {
			b.Set(c.Doc(fmt.Sprintf("big/%d", i)), map[string]any{"s": big})
		}
		return b
	}
	if _, err := batch(9).Commit(ctx); err != nil {
		t.Fatalf("9 MB batch: %v", err)
	}
	before := testSrv.Counters(p).RPCs["Commit"]
	_, err := batch(11).Commit(ctx)
	wantCode(t, "10.5 MB batch", err, codes.InvalidArgument)
	if got := testSrv.Counters(p).RPCs["Commit"] - before; got != 1 {
		t.Errorf("Commit calls = %d, want 1 (not retried)", got)
	}

	g := newGAPIC(t)
	defer g.Close()
	var writes []*firestorepb.Write
	for i := range 11 {
		writes = append(writes, &firestorepb.Write{Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{
			Name:   fmt.Sprintf("%s/documents/bigbw/%d", dbPath(p), i),
			Fields: map[string]*firestorepb.Value{"s": {ValueType: &firestorepb.Value_StringValue{StringValue: big}}},
		}}})
	}
	_, err = g.BatchWrite(ctx, &firestorepb.BatchWriteRequest{Database: dbPath(p), Writes: writes})
	wantCode(t, "10.5 MB BatchWrite", err, codes.InvalidArgument)
	snap, err := c.Doc("bigbw/0").Get(ctx)
	if status.Code(err) != codes.NotFound {
		t.Errorf("bigbw/0 after the rejected BatchWrite: %v %v, want NotFound", snap, err)
	}
}

func TestFilterCombinations(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{
		"fc/a": {"tags": []any{"x"}, "more": []any{"y"}, "n": int64(1)},
		"fc/b": {"tags": []any{"z"}, "more": []any{"y"}, "n": int64(2)},
	})
	col := c.Collection("fc")
	aca := func(f string, v ...any) firestore.PropertyFilter {
		return firestore.PropertyFilter{Path: f, Operator: "array-contains-any", Value: v}
	}
	tests := []struct {
		name string
		q    firestore.Query
		want codes.Code
	}{
		{"two array-contains-any ANDed", col.WhereEntity(firestore.AndFilter{Filters: []firestore.EntityFilter{aca("tags", "x"), aca("more", "y")}}), codes.InvalidArgument},
		{"two array-contains-any in one OR branch", col.WhereEntity(firestore.OrFilter{Filters: []firestore.EntityFilter{
			firestore.AndFilter{Filters: []firestore.EntityFilter{aca("tags", "x"), aca("more", "y")}},
			firestore.PropertyFilter{Path: "n", Operator: "==", Value: 1},
		}}), codes.InvalidArgument},
		{"array-contains-any in separate OR branches", col.WhereEntity(firestore.OrFilter{Filters: []firestore.EntityFilter{aca("tags", "x"), aca("more", "q")}}), codes.OK},
		{"array-contains with array-contains-any", col.Where("tags", "array-contains", "x").WhereEntity(aca("more", "y")), codes.OK},
		{"not-in with != null", col.Where("n", "not-in", []any{3}).Where("tags", "!=", nil), codes.InvalidArgument},
		{"not-in with != NaN", col.Where("n", "not-in", []any{3}).Where("m", "!=", math.NaN()), codes.InvalidArgument},
		{"not-in alone", col.Where("n", "not-in", []any{3}), codes.OK},
		{"!= null alone", col.Where("tags", "!=", nil), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.q.Documents(ctx).GetAll()
			wantCode(t, "query", err, tt.want)
		})
	}
}

func TestQueryTimestampRange(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{"ts/a": {"t": time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}})
	col := c.Collection("ts")
	tooLate := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	tooEarly := time.Date(0, 12, 31, 23, 59, 59, 0, time.UTC)
	tests := []struct {
		name string
		q    firestore.Query
		want codes.Code
	}{
		{"filter after 9999", col.Where("t", "<", tooLate), codes.InvalidArgument},
		{"filter before year 1", col.Where("t", ">", tooEarly), codes.InvalidArgument},
		{"in list", col.Where("t", "in", []any{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), tooLate}), codes.InvalidArgument},
		{"inside a map", col.Where("m", "==", map[string]any{"t": tooLate}), codes.InvalidArgument},
		{"start cursor", col.OrderBy("t", firestore.Asc).StartAt(tooEarly), codes.InvalidArgument},
		{"end cursor", col.OrderBy("t", firestore.Asc).EndBefore(tooLate), codes.InvalidArgument},
		{"boundaries", col.Where("t", ">=", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)).Where("t", "<=", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.q.Documents(ctx).GetAll()
			wantCode(t, "query", err, tt.want)
		})
	}
}

func TestNameAndFieldPathLimits(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seg := func(ch string, n int) string { return strings.Repeat(ch, n) }
	// pathOf returns a document path of pairs collection/document.
	pathOf := func(pairs int, segLen int) string {
		parts := make([]string, 0, 2*pairs)
		for i := range 2 * pairs {
			parts = append(parts, seg(string(rune('a'+i%26)), segLen))
		}
		return strings.Join(parts, "/")
	}
	tests := []struct {
		name string
		path string
		data map[string]any
		want codes.Code
	}{
		{"name under 6 KiB", pathOf(2, 1400), map[string]any{"n": 1}, codes.OK},
		{"name over 6 KiB", pathOf(3, 1100), map[string]any{"n": 1}, codes.InvalidArgument},
		{"100 collections deep", pathOf(100, 1), map[string]any{"n": 1}, codes.OK},
		{"101 collections deep", pathOf(101, 1), map[string]any{"n": 1}, codes.InvalidArgument},
		{"field path of 1500 bytes", "fp/ok", map[string]any{seg("a", 749): map[string]any{seg("b", 750): 1}}, codes.OK},
		{"field path over 1500 bytes", "fp/long", map[string]any{seg("a", 800): map[string]any{seg("b", 800): 1}}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Doc(tt.path).Set(ctx, tt.data)
			wantCode(t, "Set", err, tt.want)
		})
	}

	t.Run("update mask over 1500 bytes", func(t *testing.T) {
		doc := c.Doc("fp/mask")
		if _, err := doc.Set(ctx, map[string]any{"n": 1}); err != nil {
			t.Fatal(err)
		}
		_, err := doc.Update(ctx, []firestore.Update{{FieldPath: firestore.FieldPath{seg("a", 800), seg("b", 800)}, Value: 1}})
		wantCode(t, "Update", err, codes.InvalidArgument)
	})
}

func TestFieldTransformLimit(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	increments := func(prefix string, n int) []firestore.Update {
		ups := make([]firestore.Update, n)
		for i := range ups {
			ups[i] = firestore.Update{Path: fmt.Sprintf("%s%d", prefix, i), Value: firestore.Increment(1)}
		}
		return ups
	}
	doc, other := c.Doc("ft/a"), c.Doc("ft/b")
	for _, d := range []*firestore.DocumentRef{doc, other} {
		if _, err := d.Set(ctx, map[string]any{"n": 1}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		commit func() error
		want   codes.Code
	}{
		{"500 on one document", func() error { _, err := doc.Update(ctx, increments("a", 500)); return err }, codes.OK},
		{"501 on one document", func() error { _, err := doc.Update(ctx, increments("b", 501)); return err }, codes.InvalidArgument},
		{"300 + 300 in one batch", func() error {
			//lint:ignore SA1019 one Commit with two writes to one document
			_, err := c.Batch().Update(doc, increments("c", 300)).Update(doc, increments("d", 300)).Commit(ctx)
			return err
		}, codes.InvalidArgument},
		{"300 + 300 in one transaction", func() error {
			return c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				if err := tx.Update(doc, increments("e", 300)); err != nil {
					return err
				}
				return tx.Update(doc, increments("f", 300))
			})
		}, codes.InvalidArgument},
		{"300 + 200 on one document, 300 on another", func() error {
			//lint:ignore SA1019 one Commit with writes to two documents
			_, err := c.Batch().Update(doc, increments("g", 300)).Update(doc, increments("h", 200)).
				Update(other, increments("i", 300)).Commit(ctx)
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, "commit", tt.commit(), tt.want)
		})
	}
}
