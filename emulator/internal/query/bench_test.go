package query

import (
	"fmt"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
)

func benchDocs(n int) []*firestorepb.Document {
	docs := make([]*firestorepb.Document, n)
	for i := range docs {
		docs[i] = doc(fmt.Sprintf("b/d%05d", i), "i", in(int64(i)), "score", db(float64(i%97)+0.1))
	}
	return docs
}

// BenchmarkAggregate measures count, two sums and an average over 1,000
// documents, without the RPC around them.
func BenchmarkAggregate(b *testing.B) {
	docs := benchDocs(1000)
	q := aggQuery(from("b"), count("n"), sumOf("s", "score"), avgOf("a", "score"), sumOf("si", "i"))
	for b.Loop() {
		if _, err := Aggregate(testRoot, q, docs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCursorRun measures a page of 20 after a cursor over 1,000
// documents ordered by a field, without the RPC around it.
func BenchmarkCursorRun(b *testing.B) {
	docs := benchDocs(1000)
	q := from("b")
	q.OrderBy = []*firestorepb.StructuredQuery_Order{{Field: fref("i")}}
	q.StartAt = &firestorepb.Cursor{Values: []*firestorepb.Value{in(500), rf("b/d00500")}}
	q.Limit = limit(20)
	for b.Loop() {
		if _, err := Run(testRoot, q, docs); err != nil {
			b.Fatal(err)
		}
	}
}
