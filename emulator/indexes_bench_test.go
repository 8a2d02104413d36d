package emulator

import (
	"context"
	"fmt"
	"testing"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// benchIndexes declares the composite index the benchmark's query needs.
const benchIndexes = `{"indexes":[{"collectionGroup":"scores","queryScope":"COLLECTION","fields":[
	{"fieldPath":"team","order":"ASCENDING"},{"fieldPath":"score","order":"DESCENDING"}]}]}`

// BenchmarkQueryPaths measures a page of a cursor query (equality, order,
// limit, start-after) and a count over the same filter, on the shared
// server (no index check), on a server that checks indexes, and with Query
// Explain's analyze, so their costs compare within one run.
func BenchmarkQueryPaths(b *testing.B) {
	cfg, err := ParseIndexConfig([]byte(benchIndexes))
	if err != nil {
		b.Fatal(err)
	}
	checked, err := Start(Options{Indexes: cfg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { checked.Close() })
	ctx := context.Background()
	for _, mode := range []string{"unchecked", "indexes", "explain"} {
		srv := testSrv
		if mode == "indexes" {
			srv = checked
		}
		conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		c, err := firestore.NewClient(ctx, fmt.Sprintf("bench-q-%d", projectSeq.Add(1)), option.WithGRPCConn(conn))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		bw := c.BulkWriter(ctx)
		for i := range 300 {
			if _, err := bw.Set(c.Doc(fmt.Sprintf("scores/s%03d", i)), map[string]any{"team": []string{"red", "blue"}[i%2], "score": i}); err != nil {
				b.Fatal(err)
			}
		}
		bw.End()
		q := c.Collection("scores").Where("team", "==", "red").OrderBy("score", firestore.Desc).StartAfter(250).Limit(20)
		if mode == "explain" {
			q = q.WithRunOptions(firestore.ExplainOptions{Analyze: true})
		}
		b.Run("query/"+mode, func(b *testing.B) {
			for b.Loop() {
				it := q.Documents(ctx)
				n := 0
				for {
					_, err := it.Next()
					if err == iterator.Done {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 20 {
					b.Fatalf("got %d documents, want 20", n)
				}
			}
		})
		aq := q.NewAggregationQuery().WithCount("n")
		b.Run("count/"+mode, func(b *testing.B) {
			for b.Loop() {
				if _, err := aq.GetResponse(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQueryPlanning measures, in process, what the index check and
// Query Explain add to a query beside what every query costs: the engine
// over 300 documents ("run"), and the planning alone with an index check
// ("plan-indexes") or with explain analyze and its metrics
// ("plan-explain"). Without either, planning is one nil check.
func BenchmarkQueryPlanning(b *testing.B) {
	cfg, err := ParseIndexConfig([]byte(benchIndexes))
	if err != nil {
		b.Fatal(err)
	}
	cat, err := compileIndexes(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const root = "projects/p/databases/(default)/documents"
	var docs []*firestorepb.Document
	for i := range 300 {
		docs = append(docs, &firestorepb.Document{Name: fmt.Sprintf("%s/scores/s%03d", root, i), Fields: map[string]*firestorepb.Value{
			"team":  {ValueType: &firestorepb.Value_StringValue{StringValue: []string{"red", "blue"}[i%2]}},
			"score": {ValueType: &firestorepb.Value_IntegerValue{IntegerValue: int64(i)}},
		}})
	}
	q := &firestorepb.StructuredQuery{
		From: []*firestorepb.StructuredQuery_CollectionSelector{{CollectionId: "scores"}},
		Where: &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_FieldFilter{FieldFilter: &firestorepb.StructuredQuery_FieldFilter{
			Field: &firestorepb.StructuredQuery_FieldReference{FieldPath: "team"},
			Op:    firestorepb.StructuredQuery_FieldFilter_EQUAL,
			Value: &firestorepb.Value{ValueType: &firestorepb.Value_StringValue{StringValue: "red"}},
		}}},
		OrderBy: []*firestorepb.StructuredQuery_Order{{Field: &firestorepb.StructuredQuery_FieldReference{FieldPath: "score"}, Direction: firestorepb.StructuredQuery_DESCENDING}},
		StartAt: &firestorepb.Cursor{Values: []*firestorepb.Value{{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: 250}}}},
		Limit:   wrapperspb.Int32(20),
	}
	db := &database{name: "projects/p/databases/(default)", root: root}
	explain := &firestorepb.ExplainOptions{Analyze: true}
	for _, m := range []struct {
		name    string
		srv     *Server
		explain *firestorepb.ExplainOptions
	}{
		{"run", nil, nil},
		{"plan-indexes", &Server{indexes: cat}, nil},
		{"plan-explain", &Server{}, explain},
	} {
		b.Run(m.name, func(b *testing.B) {
			for b.Loop() {
				if m.srv != nil {
					p, err := m.srv.planQuery(db, root, q, nil, m.explain)
					if err != nil {
						b.Fatal(err)
					}
					if m.explain != nil && p.analyzedMetrics(execution{results: 20, reads: 20}) == nil {
						b.Fatal("no metrics")
					}
					continue
				}
				res, err := query.Run(root, q, docs)
				if err != nil || len(res) != 20 {
					b.Fatalf("Run: %d results, %v", len(res), err)
				}
			}
		})
	}
}
