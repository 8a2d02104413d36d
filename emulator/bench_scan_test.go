package emulator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

// BenchmarkSelectiveGroupQuery times a collection-group query shaped like
// savesync's changes long-poll (job ==, invalidate ==, committedAt >= a
// recent time, ordered, limited) over ledgers of 40 players holding 5,000
// and 50,000 entries in all, of which the query matches the newest few.
// With field indexes its cost follows what it reads, not the database size.
//
//	go test -run '^$' -bench SelectiveGroupQuery ./
func BenchmarkSelectiveGroupQuery(b *testing.B) {
	for _, n := range []int{5000, 50000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			ctx := context.Background()
			c := freshBenchClient(b, "bench-scan")
			start := time.Unix(1_700_000_000, 0).UTC()
			bw := c.BulkWriter(ctx)
			for i := range n {
				_, err := bw.Set(c.Doc(fmt.Sprintf("players/%d/ledger/e%06d", i%40, i)), map[string]any{
					"holderJobId": fmt.Sprintf("job-%d", i%4), "invalidate": i%5 == 0,
					"committedAt": start.Add(time.Duration(i) * time.Millisecond), "version": int64(i), "published": true,
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			bw.End()
			from := start.Add(time.Duration(n-200) * time.Millisecond)
			q := c.CollectionGroup("ledger").Where("holderJobId", "==", "job-0").Where("invalidate", "==", true).
				Where("committedAt", ">=", from).OrderBy("committedAt", firestore.Asc).Limit(50)
			// The first query builds the field indexes it uses.
			if _, err := q.Documents(ctx).GetAll(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				docs, err := q.Documents(ctx).GetAll()
				if err != nil {
					b.Fatal(err)
				}
				if len(docs) != 10 {
					b.Fatalf("%d matches, want 10", len(docs))
				}
			}
		})
	}
}
