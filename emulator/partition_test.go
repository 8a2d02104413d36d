package emulator

import (
	"context"
	"fmt"
	"testing"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// seedCollectionGroup writes n documents of collection group id, spread over three
// parents at different depths, and returns their paths.
func seedCollectionGroup(t *testing.T, c *firestore.Client, id string, n int) map[string]bool {
	t.Helper()
	ctx := context.Background()
	parents := []string{"", "a/x/", "b/y/z/w/"}
	want := map[string]bool{}
	batch := c.Batch()
	for i := range n {
		p := fmt.Sprintf("%s%s/d%04d", parents[i%len(parents)], id, i)
		want[p] = true
		batch.Set(c.Doc(p), map[string]any{"i": i})
		if (i+1)%500 == 0 || i == n-1 {
			if _, err := batch.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			batch = c.Batch()
		}
	}
	return want
}

// TestPartitionQuery checks that the Go client's GetPartitionedQueries gets
// real split points: partitions of nearly equal size whose union is every
// document of the collection group exactly once.
func TestPartitionQuery(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	want := seedCollectionGroup(t, c, "pg", 1000)
	seedCollectionGroup(t, c, "pgx", 10)    // another group
	seedCollectionGroup(t, c, "small", 200) // too few to split
	tests := []struct {
		group      string
		count      int
		partitions int
	}{
		{"pg", 5, 6},  // the Go client asks for 5 points: 6 partitions
		{"pg", 10, 7}, // 1000 documents make at most 7 partitions of >= 128
		{"pg", 2, 3},  // an odd split
		{"pg", 1, 1},  // the client does not ask for one partition
		{"small", 10, 1},
		{"none", 10, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.group, tt.count), func(t *testing.T) {
			qs, err := c.CollectionGroup(tt.group).GetPartitionedQueries(ctx, tt.count)
			if err != nil {
				t.Fatal(err)
			}
			if len(qs) != tt.partitions {
				t.Fatalf("%d partitions, want %d", len(qs), tt.partitions)
			}
			seen := map[string]int{}
			var sizes []int
			for _, q := range qs {
				got := queryPaths(t, q)
				sizes = append(sizes, len(got))
				for _, p := range got {
					seen[p]++
				}
			}
			if tt.group != "pg" {
				return
			}
			for p := range want {
				if seen[p] != 1 {
					t.Errorf("%s is in %d partitions, want 1", p, seen[p])
				}
			}
			for p := range seen {
				if !want[p] {
					t.Errorf("%s is not in group pg", p)
				}
			}
			lo, hi := 1000/tt.partitions, (1000+tt.partitions-1)/tt.partitions
			for i, n := range sizes {
				if n < lo || n > hi {
					t.Errorf("partition %d has %d documents, want %d..%d (sizes %v)", i, n, lo, hi, sizes)
				}
			}
		})
	}
}

// TestPartitionQueryRequest checks paging, read_time and the query rules of
// PartitionQueryRequest through the generated client.
func TestPartitionQueryRequest(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	seedCollectionGroup(t, c, "pq", 640) // five partitions of 128
	g := newGAPIC(t)
	defer g.Close()
	root := dbPath(p) + "/documents"
	groupQuery := func() *firestorepb.StructuredQuery {
		return &firestorepb.StructuredQuery{
			From:    []*firestorepb.StructuredQuery_CollectionSelector{{CollectionId: "pq", AllDescendants: true}},
			OrderBy: []*firestorepb.StructuredQuery_Order{{Field: &firestorepb.StructuredQuery_FieldReference{FieldPath: "__name__"}, Direction: firestorepb.StructuredQuery_ASCENDING}},
		}
	}
	points := func(req *firestorepb.PartitionQueryRequest) ([]string, error) {
		var out []string
		it := g.PartitionQuery(ctx, req)
		for {
			cur, err := it.Next()
			if err == iterator.Done {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, cur.GetValues()[0].GetReferenceValue())
		}
	}
	all, err := points(&firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("%d points for 640 documents, want 4: %v", len(all), all)
	}

	t.Run("pages", func(t *testing.T) {
		// The iterator follows next_page_token: pages of 3 and 1.
		got, err := points(&firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 10, PageSize: 3})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("paged points (-want +got):\n%s", diff)
		}
		// partition_count bounds the points across all pages.
		got, err = points(&firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 3, PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Errorf("%d points with partition_count 3, want 3: %v", len(got), got)
		}
	})
	t.Run("read time", func(t *testing.T) {
		snap, err := c.Doc("pq/d0000").Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		batch := c.Batch()
		for i := range 400 {
			batch.Set(c.Doc(fmt.Sprintf("pq/e%04d", i)), map[string]any{"i": i})
		}
		if _, err := batch.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		now, err := points(&firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(now) != 7 {
			t.Errorf("%d points for 1040 documents, want 7", len(now))
		}
		then, err := points(&firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 10,
			ConsistencySelector: &firestorepb.PartitionQueryRequest_ReadTime{ReadTime: timestamppb.New(snap.ReadTime)}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(all, then); diff != "" {
			t.Errorf("points at the earlier read time (-want +got):\n%s", diff)
		}
	})

	bad := []struct {
		name string
		req  *firestorepb.PartitionQueryRequest
	}{
		{"document parent", &firestorepb.PartitionQueryRequest{Parent: root + "/a/x", QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 2}},
		{"zero count", &firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}}},
		{"not a group", &firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: func() *firestorepb.StructuredQuery {
			q := groupQuery()
			q.From[0].AllDescendants = false
			return q
		}()}, PartitionCount: 2}},
		{"descending", &firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: func() *firestorepb.StructuredQuery {
			q := groupQuery()
			q.OrderBy[0].Direction = firestorepb.StructuredQuery_DESCENDING
			return q
		}()}, PartitionCount: 2}},
		{"no order", &firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: func() *firestorepb.StructuredQuery {
			q := groupQuery()
			q.OrderBy = nil
			return q
		}()}, PartitionCount: 2}},
		{"limit", &firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: func() *firestorepb.StructuredQuery {
			q := groupQuery()
			q.Limit = wrapperspb.Int32(5)
			return q
		}()}, PartitionCount: 2}},
		{"bad token", &firestorepb.PartitionQueryRequest{Parent: root, QueryType: &firestorepb.PartitionQueryRequest_StructuredQuery{StructuredQuery: groupQuery()}, PartitionCount: 2, PageToken: "x"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := points(tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("PartitionQuery: %v, want InvalidArgument", err)
			}
		})
	}
}
