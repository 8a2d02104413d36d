package emulator

import (
	"context"
	"io"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// minNumericID is the smallest numeric document id; the Node Admin SDK's
// recursiveDelete starts its descendant scan there.
const minNumericID = "__id-9223372036854775808__"

// queryPaths returns the database-relative paths of the documents a query returns.
func queryPaths(t *testing.T, q firestore.Query) []string {
	t.Helper()
	docs, err := q.Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = docRelPath(d.Ref)
	}
	return out
}

// docRelPath is a document's path after ".../documents/".
func docRelPath(ref *firestore.DocumentRef) string {
	_, p, _ := strings.Cut(ref.Path, "/documents/")
	return p
}

func createDocs(t *testing.T, c *firestore.Client, docPaths []string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range docPaths {
		if _, err := c.Doc(p).Set(ctx, map[string]any{"p": p}); err != nil {
			t.Fatalf("set %s: %v", p, err)
		}
	}
}

// TestNumericIDsRecursiveDeleteScan runs the descendant query the Node Admin
// SDK's recursiveDelete sends for a collection: a kindless all-descendants
// query over __name__ >= col/__id-9223372036854775808__ and
// < col\x00/__id-9223372036854775808__, names only, paged with a start_at
// cursor after the last name. The high-level Go client cannot build a
// kindless query, so this one goes through the generated client; the same
// range over a named collection group goes through the high-level client.
func TestNumericIDsRecursiveDeleteScan(t *testing.T) {
	c, p := newClient(t)
	createDocs(t, c, []string{
		"col/a", "col/__id5__", "col/__id-3__", "col/b/sub/c", "col/__id5__/sub/d",
		"colx/e", "co/f", "other/g/col/h",
	})
	root := dbPath(p) + "/documents"
	ref := func(path string) *firestorepb.Value {
		return &firestorepb.Value{ValueType: &firestorepb.Value_ReferenceValue{ReferenceValue: root + "/" + path}}
	}
	nameFilter := func(op firestorepb.StructuredQuery_FieldFilter_Operator, v *firestorepb.Value) *firestorepb.StructuredQuery_Filter {
		return &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_FieldFilter{FieldFilter: &firestorepb.StructuredQuery_FieldFilter{
			Field: &firestorepb.StructuredQuery_FieldReference{FieldPath: "__name__"}, Op: op, Value: v,
		}}}
	}
	g := newGAPIC(t)
	defer g.Close()
	run := func(start *firestorepb.Value) []string {
		t.Helper()
		q := &firestorepb.StructuredQuery{
			From: []*firestorepb.StructuredQuery_CollectionSelector{{AllDescendants: true}},
			Where: &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_CompositeFilter{CompositeFilter: &firestorepb.StructuredQuery_CompositeFilter{
				Op: firestorepb.StructuredQuery_CompositeFilter_AND,
				Filters: []*firestorepb.StructuredQuery_Filter{
					nameFilter(firestorepb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL, ref("col/"+minNumericID)),
					nameFilter(firestorepb.StructuredQuery_FieldFilter_LESS_THAN, ref("col\x00/"+minNumericID)),
				},
			}}},
			Select:  &firestorepb.StructuredQuery_Projection{Fields: []*firestorepb.StructuredQuery_FieldReference{{FieldPath: "__name__"}}},
			OrderBy: []*firestorepb.StructuredQuery_Order{{Field: &firestorepb.StructuredQuery_FieldReference{FieldPath: "__name__"}}},
			Limit:   wrapperspb.Int32(2),
		}
		if start != nil {
			q.StartAt = &firestorepb.Cursor{Values: []*firestorepb.Value{start}}
		}
		st, err := g.RunQuery(context.Background(), &firestorepb.RunQueryRequest{
			Parent: root, QueryType: &firestorepb.RunQueryRequest_StructuredQuery{StructuredQuery: q},
		})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for {
			resp, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("RunQuery: %v", err)
			}
			if d := resp.GetDocument(); d != nil {
				out = append(out, strings.TrimPrefix(d.GetName(), root+"/"))
			}
		}
		return out
	}
	var got []string
	var start *firestorepb.Value
	for {
		page := run(start)
		got = append(got, page...)
		if len(page) < 2 {
			break
		}
		start = ref(page[len(page)-1])
	}
	want := []string{"col/__id-3__", "col/__id5__", "col/__id5__/sub/d", "col/a", "col/b/sub/c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("descendants (-want +got):\n%s", diff)
	}

	// The same name range over the collection group "sub", high-level client.
	sub := c.CollectionGroup("sub").
		Where(firestore.DocumentID, ">=", c.Doc("col/"+minNumericID)).
		Where(firestore.DocumentID, "<", c.Doc("col\x00/"+minNumericID)).
		OrderBy(firestore.DocumentID, firestore.Asc)
	if diff := cmp.Diff([]string{"col/__id5__/sub/d", "col/b/sub/c"}, queryPaths(t, sub)); diff != "" {
		t.Errorf("collection group (-want +got):\n%s", diff)
	}
	// Paged with StartAfter a snapshot whose name holds a numeric id.
	first, err := sub.Limit(1).Documents(context.Background()).GetAll()
	if err != nil || len(first) != 1 {
		t.Fatalf("first page: %v, %d docs", err, len(first))
	}
	if diff := cmp.Diff([]string{"col/b/sub/c"}, queryPaths(t, sub.StartAfter(first[0]))); diff != "" {
		t.Errorf("after %s (-want +got):\n%s", first[0].Ref.Path, diff)
	}
}

// TestNumericIDsOrder checks that numeric ids sort before string ids and by
// their number, in order-by, cursors, __name__ filters and listing.
func TestNumericIDsOrder(t *testing.T) {
	c, p := newClient(t)
	ids := []string{"b", "__id10__", "a", "__id2__", "__id-10__", "__id9223372036854775807__", "__id__x", "A"}
	col := c.Collection("n")
	for _, id := range ids {
		if _, err := col.Doc(id).Set(context.Background(), map[string]any{"k": 1}); err != nil {
			t.Fatalf("set %s: %v", id, err)
		}
	}
	asc := []string{"n/__id-10__", "n/__id2__", "n/__id10__", "n/__id9223372036854775807__", "n/A", "n/__id__x", "n/a", "n/b"}
	desc := make([]string, len(asc))
	for i, p := range asc {
		desc[len(asc)-1-i] = p
	}
	tests := []struct {
		name string
		q    firestore.Query
		want []string
	}{
		{"default order", col.Query, asc},
		{"order by name", col.OrderBy(firestore.DocumentID, firestore.Asc), asc},
		{"order by name desc", col.OrderBy(firestore.DocumentID, firestore.Desc), desc},
		{"order by field then name", col.OrderBy("k", firestore.Asc), asc},
		{"start after numeric", col.OrderBy(firestore.DocumentID, firestore.Asc).StartAfter("__id2__"), asc[2:]},
		{"end before string", col.OrderBy(firestore.DocumentID, firestore.Asc).EndBefore("A"), asc[:4]},
		{"start at numeric desc", col.OrderBy(firestore.DocumentID, firestore.Desc).StartAt("__id10__"), desc[5:]},
		{"name > numeric", col.Where(firestore.DocumentID, ">", col.Doc("__id2__")), asc[2:]},
		{"name < string", col.Where(firestore.DocumentID, "<", col.Doc("A")), asc[:4]},
		{"name == numeric", col.Where(firestore.DocumentID, "==", col.Doc("__id-10__")), asc[:1]},
		{"name in", col.Where(firestore.DocumentID, "in", []any{col.Doc("__id10__"), col.Doc("a")}), []string{"n/__id10__", "n/a"}},
		{"name range numeric", col.Where(firestore.DocumentID, ">=", col.Doc(minNumericID)).Where(firestore.DocumentID, "<", col.Doc("__id11__")), asc[:3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, queryPaths(t, tt.q)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("listing", func(t *testing.T) {
		refs, err := col.DocumentRefs(context.Background()).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, len(refs))
		for i, r := range refs {
			got[i] = docRelPath(r)
		}
		if diff := cmp.Diff(asc, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("listing pages", func(t *testing.T) {
		g := newGAPIC(t)
		defer g.Close()
		var got []string
		it := g.ListDocuments(context.Background(), &firestorepb.ListDocumentsRequest{
			Parent: dbPath(p) + "/documents", CollectionId: "n", PageSize: 3,
		})
		for {
			d, err := it.Next()
			if err == iterator.Done {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d.GetName()[len(dbPath(p))+len("/documents/"):])
		}
		if diff := cmp.Diff(asc, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// TestNumericIDsValidation checks which __id…__ forms are numeric ids:
// only __id<int64>__ as a document id; every other __.*__ id stays reserved.
func TestNumericIDsValidation(t *testing.T) {
	c, _ := newClient(t)
	tests := []struct {
		path string
		ok   bool
	}{
		{"c/__id0__", true},
		{"c/__id1__", true},
		{"c/__id-1__", true},
		{"c/__id9223372036854775807__", true},
		{"c/" + minNumericID, true},
		{"c/__id5__/sub/__id6__", true},
		{"c/__id__", false},
		{"c/__idabc__", false},
		{"c/__id1.5__", false},
		{"c/__id+5__", false},
		{"c/__id007__", false},
		{"c/__id-0__", false},
		{"c/__id-__", false},
		{"c/__id 5__", false},
		{"c/__id9223372036854775808__", false},
		{"c/__id-9223372036854775809__", false},
		{"c/__x__", false},
		{"__id5__/d", false},
		{"c/d/__id5__/e", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := c.Doc(tt.path).Set(context.Background(), map[string]any{"x": 1})
			switch {
			case tt.ok && err != nil:
				t.Errorf("Set: %v, want success", err)
			case !tt.ok && status.Code(err) != codes.InvalidArgument:
				t.Errorf("Set: %v, want InvalidArgument", err)
			}
		})
	}
}
