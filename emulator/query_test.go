package emulator

import (
	"context"
	"sort"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// seed writes docs (path -> data) with one batch.
func seed(t *testing.T, c *firestore.Client, docs map[string]map[string]any) {
	t.Helper()
	b := c.Batch() //lint:ignore SA1019 one atomic commit keeps the seed quick
	for p, d := range docs {
		b.Set(c.Doc(p), d)
	}
	if _, err := b.Commit(context.Background()); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func ids(t *testing.T, it *firestore.DocumentIterator) []string {
	t.Helper()
	snaps, err := it.GetAll()
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	out := []string{}
	for _, s := range snaps {
		out = append(out, s.Ref.ID)
	}
	return out
}

func TestQueries(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{
		"players/a":          {"score": 10, "team": "red"},
		"players/b":          {"score": 30, "team": "blue"},
		"players/c":          {"score": 20, "team": "red"},
		"players/d":          {"team": "red"},
		"players/a/ledger/1": {"amount": 5},
		"players/b/ledger/1": {"amount": 7},
		"players/b/ledger/2": {"amount": 1},
		"other/x/ledger/9":   {"amount": 100},
	})
	players := c.Collection("players")
	tests := []struct {
		name string
		q    firestore.Query
		want []string
	}{
		{"where and order", players.Where("team", "==", "red").OrderBy("score", firestore.Desc), []string{"c", "a"}},
		{"inequality adds implicit order", players.Where("score", ">", 10), []string{"c", "b"}},
		{"limit to last", players.OrderBy("score", firestore.Asc).LimitToLast(2), []string{"c", "b"}},
		{"cursor", players.OrderBy("score", firestore.Asc).StartAfter(10), []string{"c", "b"}},
		{"collection group", c.CollectionGroup("ledger").Where("amount", ">=", 5), []string{"9", "1", "1"}},
		{"subcollection", c.Collection("players/b/ledger").OrderBy("amount", firestore.Asc), []string{"2", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(t, tt.q.Documents(ctx))
			if tt.name == "collection group" {
				sort.Strings(got)
				sort.Strings(tt.want)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("aggregations", func(t *testing.T) {
		q := players.Where("team", "==", "red")
		res, err := q.NewAggregationQuery().WithCount("n").WithSum("score", "total").WithAvg("score", "mean").Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]*firestorepb.Value{}
		for k, v := range res {
			got[k] = v.(*firestorepb.Value)
		}
		want := map[string]*firestorepb.Value{
			"n":     {ValueType: &firestorepb.Value_IntegerValue{IntegerValue: 2}},
			"total": {ValueType: &firestorepb.Value_IntegerValue{IntegerValue: 30}},
			"mean":  {ValueType: &firestorepb.Value_DoubleValue{DoubleValue: 15}},
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("aggregations (-want +got):\n%s", diff)
		}
	})
	t.Run("query in transaction", func(t *testing.T) {
		var got []string
		err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			got = ids(t, tx.Documents(players.Where("team", "==", "blue")))
			return tx.Set(c.Doc("players/e"), map[string]any{"team": "blue", "score": 1})
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"b"}, got); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
	})
}

func TestListCollectionsAndDocumentRefs(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{
		"users/u1":            {"n": 1},
		"users/u2/settings/s": {"n": 1}, // users/u2 itself does not exist
		"teams/t1":            {"n": 1},
		"users/u1/inbox/m1":   {"n": 1},
	})
	var roots []string
	it := c.Collections(ctx)
	for {
		cr, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, cr.ID)
	}
	if diff := cmp.Diff([]string{"teams", "users"}, roots); diff != "" {
		t.Errorf("root collections (-want +got):\n%s", diff)
	}
	var subs []string
	sit := c.Doc("users/u1").Collections(ctx)
	for {
		cr, err := sit.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, cr.ID)
	}
	if diff := cmp.Diff([]string{"inbox"}, subs); diff != "" {
		t.Errorf("subcollections (-want +got):\n%s", diff)
	}
	refs, err := c.Collection("users").DocumentRefs(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.ID)
	}
	if diff := cmp.Diff([]string{"u1", "u2"}, names); diff != "" {
		t.Errorf("document refs with missing parents (-want +got):\n%s", diff)
	}
}

func TestBulkWriter(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	bw := c.BulkWriter(ctx)
	var jobs []*firestore.BulkWriterJob
	for i := 0; i < 45; i++ {
		j, err := bw.Create(c.Collection("bulk").Doc(string(rune('a'+i%26))+string(rune('a'+i/26))), map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	bw.End()
	for i, j := range jobs {
		if _, err := j.Results(); err != nil {
			t.Errorf("job %d: %v", i, err)
		}
	}
	n, err := c.Collection("bulk").NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := n["n"].(*firestorepb.Value).GetIntegerValue(); got != 45 {
		t.Errorf("count = %d, want 45", got)
	}
	if got := testSrv.Counters(p).RPCs["BatchWrite"]; got < 3 {
		t.Errorf("BatchWrite calls = %d, want at least 3 (batches of 20)", got)
	}
}

func TestBatchWriteStatusPerWrite(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{"bw/exists": {"n": 1}})
	g := newGAPIC(t)
	defer g.Close()
	root := dbPath(p) + "/documents/"
	resp, err := g.BatchWrite(ctx, &firestorepb.BatchWriteRequest{Database: dbPath(p), Writes: []*firestorepb.Write{
		{Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: root + "bw/exists"}}, CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}}},
		{Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: root + "bw/new"}}},
		{Operation: &firestorepb.Write_Delete{Delete: root + "bw/none"}, CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int32
	for _, s := range resp.Status {
		got = append(got, s.GetCode())
	}
	if diff := cmp.Diff([]int32{6, 0, 5}, got); diff != "" { // ALREADY_EXISTS, OK, NOT_FOUND
		t.Errorf("status codes (-want +got):\n%s", diff)
	}
	if len(resp.WriteResults) != 3 {
		t.Errorf("write results = %d, want 3", len(resp.WriteResults))
	}
}

func TestReadTime(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	doc := c.Doc("rt/a")
	wr1, err := doc.Set(ctx, map[string]any{"n": int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := doc.Set(ctx, map[string]any{"n": int64(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Doc("rt/b").Set(ctx, map[string]any{"n": int64(3)}); err != nil {
		t.Fatal(err)
	}
	// Through the client's read-only transaction at a read time.
	var n any
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(doc)
		if err != nil {
			return err
		}
		n, _ = snap.DataAt("n")
		return nil
	}, firestore.ReadOnly, firestore.TransactionReadTime(wr1.UpdateTime))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(1) {
		t.Errorf("n at first write = %v, want 1", n)
	}
	// A query at that time sees only the first document.
	got := ids(t, c.Collection("rt").WithReadOptions(firestore.ReadTime(wr1.UpdateTime)).Documents(ctx))
	if diff := cmp.Diff([]string{"a"}, got); diff != "" {
		t.Errorf("query at read time (-want +got):\n%s", diff)
	}
	// Beyond the retention: FAILED_PRECONDITION.
	g := newGAPIC(t)
	defer g.Close()
	st, err := g.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{
		Database: dbPath(p), Documents: []string{dbPath(p) + "/documents/rt/a"},
		ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_ReadTime{ReadTime: timestamppb.New(time.Now().Add(-2 * time.Hour))},
	})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("read two hours back: %v, want FailedPrecondition", err)
	}
}

func TestQueryInTransactionBlocksPhantoms(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{"ph/a": {"n": 1}})
	g := newGAPIC(t)
	defer g.Close()
	bt, err := g.BeginTransaction(ctx, &firestorepb.BeginTransactionRequest{Database: dbPath(p)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.RunQuery(ctx, &firestorepb.RunQueryRequest{
		Parent:              dbPath(p) + "/documents",
		QueryType:           &firestorepb.RunQueryRequest_StructuredQuery{StructuredQuery: &firestorepb.StructuredQuery{From: []*firestorepb.StructuredQuery_CollectionSelector{{CollectionId: "ph"}}}},
		ConsistencySelector: &firestorepb.RunQueryRequest_Transaction{Transaction: bt.Transaction},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Doc("ph/b").Create(ctx, map[string]any{"n": 2})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("insert into a queried collection finished (%v) before the transaction ended", err)
	case <-time.After(100 * time.Millisecond):
	}
	// A write elsewhere is not blocked.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Doc("elsewhere/x").Set(wctx, map[string]any{"n": 1}); err != nil {
		t.Fatalf("unrelated write: %v", err)
	}
	if _, err := g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(p), Transaction: bt.Transaction}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("insert after commit: %v", err)
	}
}
