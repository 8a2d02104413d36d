package emulator

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

// benchClient returns a client for a fresh project on the shared server.
func benchClient(b *testing.B) *firestore.Client {
	b.Helper()
	c, _ := benchClientProject(b)
	return c
}

// benchClientProject returns a client for a fresh project and the project.
func benchClientProject(b *testing.B) (*firestore.Client, string) {
	b.Helper()
	p := fmt.Sprintf("bench-%d", projectSeq.Add(1))
	c, err := firestore.NewClient(context.Background(), p, optionConn(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, p
}

func reportRate(b *testing.B, start time.Time, unit string) {
	b.Helper()
	if d := time.Since(start).Seconds(); d > 0 {
		b.ReportMetric(float64(b.N)/d, unit)
	}
}

// BenchmarkCommit measures single-document Set calls (one Commit each) from
// parallel goroutines, each on its own document.
func BenchmarkCommit(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	var seq atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		doc := c.Collection("bench").Doc(fmt.Sprintf("d%d", seq.Add(1)))
		i := 0
		for pb.Next() {
			i++
			if _, err := doc.Set(ctx, map[string]any{"n": i}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start, "commits/s")
}

// BenchmarkTransactionHotDocument measures read-modify-write transactions
// that all increment one document (the worst case for contention). Under
// wound-wait many attempts are aborted and retried after the client's
// backoff; aborts/op reports how many.
func BenchmarkTransactionHotDocument(b *testing.B) {
	c, project := benchClientProject(b)
	ctx := context.Background()
	doc := c.Doc("bench/hot")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(0)}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(8) // many callers contend for one document
	before := testSrv.Counters(project).Aborts
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				snap, err := tx.Get(doc)
				if err != nil {
					return err
				}
				n, _ := snap.DataAt("n")
				return tx.Set(doc, map[string]any{"n": n.(int64) + 1})
			}, firestore.MaxAttempts(1000))
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start, "txns/s")
	b.ReportMetric(float64(testSrv.Counters(project).Aborts-before)/float64(b.N), "aborts/op")
}

// BenchmarkTransactionDistinctDocuments measures read-modify-write
// transactions on a document per goroutine (no contention).
func BenchmarkTransactionDistinctDocuments(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	var seq atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		doc := c.Collection("bench").Doc(fmt.Sprintf("t%d", seq.Add(1)))
		for pb.Next() {
			err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				snap, err := tx.Get(doc)
				var n int64
				if err == nil {
					v, _ := snap.DataAt("n")
					n = v.(int64)
				}
				return tx.Set(doc, map[string]any{"n": n + 1})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start, "txns/s")
}

// seedBench writes n documents {i, score} to collection coll.
func seedBench(b *testing.B, c *firestore.Client, coll string, n int) {
	b.Helper()
	ctx := context.Background()
	batch := c.Batch()
	for i := range n {
		batch.Set(c.Collection(coll).Doc(fmt.Sprintf("d%05d", i)), map[string]any{"i": i, "score": float64(i%97) + 0.1})
		if (i+1)%500 == 0 || i == n-1 {
			if _, err := batch.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			batch = c.Batch()
		}
	}
}

// BenchmarkCursorQuery measures a page of 20 after a cursor, over 1,000
// documents ordered by a field.
func BenchmarkCursorQuery(b *testing.B) {
	c := benchClient(b)
	seedBench(b, c, "page", 1000)
	ctx := context.Background()
	q := c.Collection("page").OrderBy("i", firestore.Asc).Limit(20)
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		docs, err := q.StartAfter(n % 900).Documents(ctx).GetAll()
		if err != nil || len(docs) != 20 {
			b.Fatalf("page: %v, %d docs", err, len(docs))
		}
	}
}

// BenchmarkAggregation measures count, sum and average over 1,000 documents.
func BenchmarkAggregation(b *testing.B) {
	c := benchClient(b)
	seedBench(b, c, "agg", 1000)
	ctx := context.Background()
	q := c.Collection("agg").NewAggregationQuery().WithCount("n").WithSum("score", "s").WithAvg("score", "a").WithSum("i", "si")
	b.ResetTimer()
	for b.Loop() {
		if _, err := q.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
