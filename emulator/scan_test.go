package emulator

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
)

// TestIndexedQueriesMatchScans runs random queries with equality and range
// filters, in collections and collection groups, against random documents
// that keep changing (set, update, delete). Each query runs twice through
// the Go client: at the latest state, where field indexes pick the
// candidates, and at a read time just after the last commit, where every
// document of the collections is scanned. Both must return the same
// documents in the same order.
func TestIndexedQueriesMatchScans(t *testing.T) {
	ctx := context.Background()
	c, _ := newClient(t)
	rng := rand.New(rand.NewPCG(7, 19))
	values := []any{
		int64(1), int64(2), 2.0, 2.5, int64(-3), math.NaN(), math.Inf(-1), nil, true, false,
		"a", "b", "", time.Unix(1700000000, 0).UTC(), time.Unix(1800000000, 0).UTC(),
		[]any{int64(1), "x"}, map[string]any{"k": int64(1)}, []byte("z"),
	}
	pick := func() any { return values[rng.IntN(len(values))] }
	parents := []string{"p/1", "p/2", "q/1/r/9"}
	fields := []string{"a", "b", "m.k"}
	var refs []*firestore.DocumentRef
	for _, parent := range parents {
		for _, coll := range []string{"items", "other"} {
			for i := range 12 {
				refs = append(refs, c.Doc(fmt.Sprintf("%s/%s/d%02d", parent, coll, i)))
			}
		}
	}
	randomDoc := func() map[string]any {
		d := map[string]any{}
		for _, f := range []string{"a", "b"} {
			if rng.IntN(4) > 0 {
				d[f] = pick()
			}
		}
		if rng.IntN(2) == 0 {
			d["m"] = map[string]any{"k": pick()}
		}
		return d
	}
	ops := []string{"==", "<", "<=", ">", ">="}
	ids := func(docs []*firestore.DocumentSnapshot) []string {
		out := []string{}
		for _, d := range docs {
			out = append(out, d.Ref.Path)
		}
		return out
	}
	for round := range 25 {
		for range 20 {
			ref := refs[rng.IntN(len(refs))]
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = ref.Delete(ctx)
			case 1:
				_, err = ref.Set(ctx, map[string]any{"a": pick()}, firestore.MergeAll)
			default:
				_, err = ref.Set(ctx, randomDoc())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		// A write elsewhere gives the read time to use: every change above
		// is at or before it.
		wr, err := c.Doc("clock/tick").Set(ctx, map[string]any{"round": int64(round)})
		if err != nil {
			t.Fatal(err)
		}
		for range 12 {
			var q firestore.Query
			desc := ""
			if rng.IntN(2) == 0 {
				q = c.CollectionGroup("items").Query
				desc = "group items"
			} else {
				parent := parents[rng.IntN(len(parents))]
				q = c.Collection(parent + "/items").Query
				desc = parent + "/items"
			}
			for range 1 + rng.IntN(2) {
				f, op, v := fields[rng.IntN(len(fields))], ops[rng.IntN(len(ops))], pick()
				if v == nil || isNaN(v) {
					continue // the client sends null and NaN only as unary filters
				}
				q = q.WherePath(firestore.FieldPath(splitDots(f)), op, v)
				desc += fmt.Sprintf(" %s %s %v", f, op, v)
			}
			if rng.IntN(2) == 0 {
				q = q.Limit(1 + rng.IntN(5))
			}
			latest, err := q.Documents(ctx).GetAll()
			if err != nil {
				t.Fatalf("%s: %v", desc, err)
			}
			atTime, err := queryAt(ctx, c, q, wr.UpdateTime)
			if err != nil {
				t.Fatalf("%s at read time: %v", desc, err)
			}
			if diff := cmp.Diff(ids(atTime), ids(latest)); diff != "" {
				t.Fatalf("round %d, %s: indexed (+) and scanned (-) results differ:\n%s", round, desc, diff)
			}
		}
	}
}

func isNaN(v any) bool {
	f, ok := v.(float64)
	return ok && math.IsNaN(f)
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// queryAt runs q at read time at, through a read-only transaction.
func queryAt(ctx context.Context, c *firestore.Client, q firestore.Query, at time.Time) ([]*firestore.DocumentSnapshot, error) {
	var out []*firestore.DocumentSnapshot
	err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		docs, err := tx.Documents(q).GetAll()
		out = docs
		return err
	}, firestore.ReadOnly, firestore.TransactionReadTime(at))
	return out, err
}

// TestSelectiveQueryReadsFewCandidates checks that a query with a
// selective filter over a large collection group takes its candidates from
// a field index, and that the index follows later writes and deletes.
func TestSelectiveQueryReadsFewCandidates(t *testing.T) {
	ctx := context.Background()
	c, p := newClient(t)
	bw := c.BulkWriter(ctx)
	for i := range 2000 {
		state := "done"
		if i%500 == 0 {
			state = "open"
		}
		if _, err := bw.Set(c.Doc(fmt.Sprintf("players/%d/ledger/e%d", i%40, i)), map[string]any{"state": state, "n": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	bw.End()
	db, err := testSrv.database(dbPath(p))
	if err != nil {
		t.Fatal(err)
	}
	root := dbPath(p) + "/documents"
	candidates := func(q *firestorepb.StructuredQuery) int {
		db.mu.RLock()
		defer db.mu.RUnlock()
		return len(candidatesLocked(db, root, q, 0))
	}
	eq := func(field string, v *firestorepb.Value) *firestorepb.StructuredQuery {
		return &firestorepb.StructuredQuery{
			From: []*firestorepb.StructuredQuery_CollectionSelector{{CollectionId: "ledger", AllDescendants: true}},
			Where: &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_FieldFilter{FieldFilter: &firestorepb.StructuredQuery_FieldFilter{
				Field: &firestorepb.StructuredQuery_FieldReference{FieldPath: field}, Op: firestorepb.StructuredQuery_FieldFilter_EQUAL, Value: v,
			}}},
		}
	}
	open := eq("state", &firestorepb.Value{ValueType: &firestorepb.Value_StringValue{StringValue: "open"}})
	if got := candidates(open); got != 4 {
		t.Errorf("state == open: %d candidates, want the 4 open entries of 2,000", got)
	}
	if _, err := c.Doc("players/3/ledger/e3").Update(ctx, []firestore.Update{{Path: "state", Value: "open"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Doc("players/0/ledger/e0").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := candidates(open); got != 4 {
		t.Errorf("after one entry opened and one deleted: %d candidates, want 4", got)
	}
	docs, err := c.CollectionGroup("ledger").Where("state", "==", "open").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, d.Ref.ID)
	}
	if diff := cmp.Diff([]string{"e1000", "e1500", "e500", "e3"}, got); diff != "" {
		t.Errorf("state == open (-want +got):\n%s", diff)
	}
}
