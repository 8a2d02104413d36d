package query

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type sq = firestorepb.StructuredQuery

// doc builds a document at testRoot/path with alternating keys and values.
func doc(path string, kv ...any) *firestorepb.Document {
	return &firestorepb.Document{
		Name:       testRoot + "/" + path,
		Fields:     fields(kv...),
		CreateTime: &timestamppb.Timestamp{Seconds: 100},
		UpdateTime: &timestamppb.Timestamp{Seconds: 200},
	}
}

func from(coll string) *sq {
	return &sq{From: []*sq_CollectionSelector{{CollectionId: coll}}}
}

type sq_CollectionSelector = firestorepb.StructuredQuery_CollectionSelector

func fref(path string) *firestorepb.StructuredQuery_FieldReference {
	return &firestorepb.StructuredQuery_FieldReference{FieldPath: path}
}

func ff(path string, op firestorepb.StructuredQuery_FieldFilter_Operator, v *firestorepb.Value) *firestorepb.StructuredQuery_Filter {
	return &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_FieldFilter{
		FieldFilter: &firestorepb.StructuredQuery_FieldFilter{Field: fref(path), Op: op, Value: v},
	}}
}

func uf(path string, op firestorepb.StructuredQuery_UnaryFilter_Operator) *firestorepb.StructuredQuery_Filter {
	return &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_UnaryFilter{
		UnaryFilter: &firestorepb.StructuredQuery_UnaryFilter{Op: op, OperandType: &firestorepb.StructuredQuery_UnaryFilter_Field{Field: fref(path)}},
	}}
}

func composite(op firestorepb.StructuredQuery_CompositeFilter_Operator, fs ...*firestorepb.StructuredQuery_Filter) *firestorepb.StructuredQuery_Filter {
	return &firestorepb.StructuredQuery_Filter{FilterType: &firestorepb.StructuredQuery_Filter_CompositeFilter{
		CompositeFilter: &firestorepb.StructuredQuery_CompositeFilter{Op: op, Filters: fs},
	}}
}

func and(fs ...*firestorepb.StructuredQuery_Filter) *firestorepb.StructuredQuery_Filter {
	return composite(firestorepb.StructuredQuery_CompositeFilter_AND, fs...)
}

func or(fs ...*firestorepb.StructuredQuery_Filter) *firestorepb.StructuredQuery_Filter {
	return composite(firestorepb.StructuredQuery_CompositeFilter_OR, fs...)
}

func asc(path string) *firestorepb.StructuredQuery_Order {
	return &firestorepb.StructuredQuery_Order{Field: fref(path), Direction: firestorepb.StructuredQuery_ASCENDING}
}

func desc(path string) *firestorepb.StructuredQuery_Order {
	return &firestorepb.StructuredQuery_Order{Field: fref(path), Direction: firestorepb.StructuredQuery_DESCENDING}
}

func cursor(before bool, vs ...*firestorepb.Value) *firestorepb.Cursor {
	return &firestorepb.Cursor{Values: vs, Before: before}
}

func limit(n int32) *wrapperspb.Int32Value { return wrapperspb.Int32(n) }

// with returns a copy of q changed by f.
func with(q *sq, f func(q *sq)) *sq {
	c := proto.Clone(q).(*sq)
	f(c)
	return c
}

func where(coll string, f *firestorepb.StructuredQuery_Filter) *sq {
	return with(from(coll), func(q *sq) { q.Where = f })
}

// names returns the result names relative to testRoot.
func names(docs []*firestorepb.Document) []string {
	out := []string{}
	for _, d := range docs {
		out = append(out, strings.TrimPrefix(d.GetName(), testRoot+"/"))
	}
	return out
}

const (
	opEq       = firestorepb.StructuredQuery_FieldFilter_EQUAL
	opNe       = firestorepb.StructuredQuery_FieldFilter_NOT_EQUAL
	opLt       = firestorepb.StructuredQuery_FieldFilter_LESS_THAN
	opLe       = firestorepb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL
	opGt       = firestorepb.StructuredQuery_FieldFilter_GREATER_THAN
	opGe       = firestorepb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL
	opIn       = firestorepb.StructuredQuery_FieldFilter_IN
	opNotIn    = firestorepb.StructuredQuery_FieldFilter_NOT_IN
	opContains = firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS
	opAny      = firestorepb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY
	opIsNull   = firestorepb.StructuredQuery_UnaryFilter_IS_NULL
	opIsNaN    = firestorepb.StructuredQuery_UnaryFilter_IS_NAN
	opNotNull  = firestorepb.StructuredQuery_UnaryFilter_IS_NOT_NULL
	opNotNaN   = firestorepb.StructuredQuery_UnaryFilter_IS_NOT_NAN
)

// typedDocs holds one document per kind of value in field v, plus one
// without v.
func typedDocs() []*firestorepb.Document {
	return []*firestorepb.Document{
		doc("c/arr", "v", arr(in(1), st("a"))),
		doc("c/bool", "v", bl(true)),
		doc("c/map", "v", mp("x", in(1))),
		doc("c/missing", "w", in(1)),
		doc("c/n1", "v", in(1)),
		doc("c/n2", "v", db(2)),
		doc("c/n3", "v", in(3)),
		doc("c/nan", "v", db(math.NaN())),
		doc("c/null", "v", nul()),
		doc("c/ref", "v", rf("c/n1")),
		doc("c/s", "v", st("a")),
		doc("c/s2", "v", st("b")),
		doc("c/ts", "v", ts(5, 0)),
		doc("c/nested", "v", mp("x", in(2)), "a", mp("b", in(7))),
	}
}

func TestRunOperators(t *testing.T) {
	docs := typedDocs()
	tests := []struct {
		name string
		q    *sq
		want []string
	}{
		{"no filter orders by name", from("c"), []string{"c/arr", "c/bool", "c/map", "c/missing", "c/n1", "c/n2", "c/n3", "c/nan", "c/nested", "c/null", "c/ref", "c/s", "c/s2", "c/ts"}},
		{"== int matches int", where("c", ff("v", opEq, in(1))), []string{"c/n1"}},
		{"== int matches equal double", where("c", ff("v", opEq, in(2))), []string{"c/n2"}},
		{"== string", where("c", ff("v", opEq, st("a"))), []string{"c/s"}},
		{"== map", where("c", ff("v", opEq, mp("x", db(1)))), []string{"c/map"}},
		{"== array", where("c", ff("v", opEq, arr(db(1), st("a")))), []string{"c/arr"}},
		{"== nested field", where("c", ff("a.b", opEq, in(7))), []string{"c/nested"}},
		{"== no match across types", where("c", ff("v", opEq, st("1"))), []string{}},
		{"< number includes NaN only from numbers", where("c", ff("v", opLt, in(3))), []string{"c/nan", "c/n1", "c/n2"}},
		{"<= number", where("c", ff("v", opLe, db(3))), []string{"c/nan", "c/n1", "c/n2", "c/n3"}},
		{"> number", where("c", ff("v", opGt, db(1.5))), []string{"c/n2", "c/n3"}},
		{">= number", where("c", ff("v", opGe, in(2))), []string{"c/n2", "c/n3"}},
		{"> -inf excludes NaN", where("c", ff("v", opGt, db(math.Inf(-1)))), []string{"c/n1", "c/n2", "c/n3"}},
		{"> string", where("c", ff("v", opGt, st("a"))), []string{"c/s2"}},
		{">= empty string", where("c", ff("v", opGe, st(""))), []string{"c/s", "c/s2"}},
		{"> false", where("c", ff("v", opGt, bl(false))), []string{"c/bool"}},
		{"< timestamp", where("c", ff("v", opLt, ts(6, 0))), []string{"c/ts"}},
		{"> empty map", where("c", ff("v", opGt, mp())), []string{"c/map", "c/nested"}},
		{"> empty array", where("c", ff("v", opGt, arr())), []string{"c/arr"}},
		{"<= null", where("c", ff("v", opLe, nul())), []string{"c/null"}},
		{"< null", where("c", ff("v", opLt, nul())), []string{}},
		{">= reference", where("c", ff("v", opGe, rf("c"))), []string{"c/ref"}},
		{"!= excludes missing and null, orders by field", where("c", ff("v", opNe, in(1))),
			[]string{"c/bool", "c/nan", "c/n2", "c/n3", "c/ts", "c/s", "c/s2", "c/ref", "c/arr", "c/map", "c/nested"}},
		{"!= double equal to int", where("c", ff("v", opNe, db(3))),
			[]string{"c/bool", "c/nan", "c/n1", "c/n2", "c/ts", "c/s", "c/s2", "c/ref", "c/arr", "c/map", "c/nested"}},
		{"in", where("c", ff("v", opIn, arr(in(1), st("b"), db(3)))), []string{"c/n1", "c/n3", "c/s2"}},
		{"in with array element", where("c", ff("v", opIn, arr(arr(in(1), st("a"))))), []string{"c/arr"}},
		{"not-in", where("c", ff("v", opNotIn, arr(in(1), st("a"), bl(true), mp("x", in(1)), mp("x", in(2))))),
			[]string{"c/nan", "c/n2", "c/n3", "c/ts", "c/s2", "c/ref", "c/arr"}},
		{"not-in with null matches nothing", where("c", ff("v", opNotIn, arr(in(1), nul()))), []string{}},
		{"array-contains", where("c", ff("v", opContains, db(1))), []string{"c/arr"}},
		{"array-contains no match", where("c", ff("v", opContains, st("b"))), []string{}},
		{"array-contains-any", where("c", ff("v", opAny, arr(st("z"), st("a")))), []string{"c/arr"}},
		{"is null", where("c", uf("v", opIsNull)), []string{"c/null"}},
		{"is nan", where("c", uf("v", opIsNaN)), []string{"c/nan"}},
		{"is not null", where("c", uf("v", opNotNull)),
			[]string{"c/bool", "c/nan", "c/n1", "c/n2", "c/n3", "c/ts", "c/s", "c/s2", "c/ref", "c/arr", "c/map", "c/nested"}},
		{"is not nan", where("c", uf("v", opNotNaN)),
			[]string{"c/bool", "c/n1", "c/n2", "c/n3", "c/ts", "c/s", "c/s2", "c/ref", "c/arr", "c/map", "c/nested"}},
		{"__name__ ==", where("c", ff("__name__", opEq, rf("c/n2"))), []string{"c/n2"}},
		{"__name__ >", where("c", ff("__name__", opGt, rf("c/s"))), []string{"c/s2", "c/ts"}},
		{"__name__ < prefix doc", where("c", ff("__name__", opLt, rf("c/bool"))), []string{"c/arr"}},
		{"__name__ in", where("c", ff("__name__", opIn, arr(rf("c/s"), rf("c/n1"), rf("other/n1")))), []string{"c/n1", "c/s"}},
		{"__name__ not-in", where("c", and(ff("__name__", opNotIn, arr(rf("c/arr"), rf("c/bool"))), ff("__name__", opLt, rf("c/missing")))), []string{"c/map"}},
		{"and", where("c", and(ff("v", opGe, in(1)), ff("v", opLt, in(3)))), []string{"c/n1", "c/n2"}},
		{"and with single filter", where("c", and(ff("v", opEq, in(1)))), []string{"c/n1"}},
		{"or", where("c", or(ff("v", opEq, in(1)), ff("v", opEq, st("b")), uf("v", opIsNull))), []string{"c/n1", "c/null", "c/s2"}},
		{"or across fields", where("c", or(ff("w", opEq, in(1)), ff("v", opEq, st("b")))), []string{"c/missing", "c/s2"}},
		// The inequality adds an implicit order on a.b, which drops
		// documents without a.b even when another branch matches them.
		{"or with inequality orders by its field", where("c", or(ff("w", opEq, in(1)), ff("a.b", opGt, in(0)))), []string{"c/nested"}},
		{"and of ors", where("c", and(
			or(ff("v", opEq, in(1)), ff("v", opEq, in(3)), ff("v", opEq, st("a"))),
			or(uf("v", opNotNaN), ff("v", opEq, in(99))),
			ff("__name__", opGt, rf("c/n1")))), []string{"c/n3", "c/s"}},
		{"or of ands", where("c", or(
			and(ff("v", opGt, in(1)), ff("v", opLt, in(3))),
			and(ff("v", opGe, st("b")), ff("v", opLt, st("c"))))), []string{"c/n2", "c/s2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(testRoot, tt.q, docs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := cmp.Diff(tt.want, names(got)); d != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestRunSelection(t *testing.T) {
	docs := []*firestorepb.Document{
		doc("users/a", "n", in(1)),
		doc("users/b", "n", in(2)),
		doc("users/a/tasks/t1", "n", in(3)),
		doc("users/a/tasks/t2", "n", in(4)),
		doc("users/b/tasks/t3", "n", in(5)),
		doc("users/a/tasks/t1/tasks/deep", "n", in(6)),
		doc("tasks/root", "n", in(7)),
		doc("userss/x", "n", in(8)),
		doc("users/a/notes/n1", "n", in(9)),
		{Name: "projects/p/databases/other/documents/users/z", Fields: fields("n", in(10))},
		{Name: "projects/q/databases/(default)/documents/users/y", Fields: fields("n", in(11))},
	}
	allDesc := func(coll string) *sq {
		return &sq{From: []*sq_CollectionSelector{{CollectionId: coll, AllDescendants: true}}}
	}
	tests := []struct {
		name   string
		parent string
		q      *sq
		want   []string
	}{
		{"root collection", testRoot, from("users"), []string{"users/a", "users/b"}},
		{"subcollection", testRoot + "/users/a", from("tasks"), []string{"users/a/tasks/t1", "users/a/tasks/t2"}},
		{"subcollection of other parent", testRoot + "/users/b", from("tasks"), []string{"users/b/tasks/t3"}},
		{"collection group", testRoot, allDesc("tasks"), []string{"tasks/root", "users/a/tasks/t1", "users/a/tasks/t1/tasks/deep", "users/a/tasks/t2", "users/b/tasks/t3"}},
		{"collection group under document", testRoot + "/users/a", allDesc("tasks"), []string{"users/a/tasks/t1", "users/a/tasks/t1/tasks/deep", "users/a/tasks/t2"}},
		{"all descendants of any collection", testRoot + "/users/a", allDesc(""), []string{"users/a/notes/n1", "users/a/tasks/t1", "users/a/tasks/t1/tasks/deep", "users/a/tasks/t2"}},
		{"any collection directly under parent", testRoot + "/users/a", from(""), []string{"users/a/notes/n1", "users/a/tasks/t1", "users/a/tasks/t2"}},
		{"missing collection", testRoot, from("nothing"), []string{}},
		{"other database", "projects/p/databases/other/documents", from("users"), []string{"users/z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(tt.parent, tt.q, docs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			gotNames := []string{}
			for _, d := range got {
				n := d.GetName()
				n = n[strings.Index(n, "/documents/")+len("/documents/"):]
				gotNames = append(gotNames, n)
			}
			if d := cmp.Diff(tt.want, gotNames); d != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// scoreDocs is a small collection for ordering, cursor and limit tests.
func scoreDocs() []*firestorepb.Document {
	return []*firestorepb.Document{
		doc("s/a", "team", st("red"), "score", in(10), "age", in(30)),
		doc("s/b", "team", st("blue"), "score", in(20), "age", in(20)),
		doc("s/c", "team", st("red"), "score", db(20), "age", in(40)),
		doc("s/d", "team", st("blue"), "score", in(5), "age", in(20)),
		doc("s/e", "team", st("green"), "age", in(50)),
		doc("s/f", "team", st("red"), "score", in(30)),
	}
}

func TestRunOrderCursorsLimit(t *testing.T) {
	docs := scoreDocs()
	base := from("s")
	tests := []struct {
		name string
		q    *sq
		want []string
	}{
		{"order asc excludes missing", with(base, func(q *sq) { q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")} }), []string{"s/d", "s/a", "s/b", "s/c", "s/f"}},
		{"order desc ties by name desc", with(base, func(q *sq) { q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("score")} }), []string{"s/f", "s/c", "s/b", "s/a", "s/d"}},
		{"unspecified direction is ascending", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{{Field: fref("age")}}
		}), []string{"s/b", "s/d", "s/a", "s/c", "s/e"}},
		{"two orders", with(base, func(q *sq) { q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("team"), desc("score")} }), []string{"s/b", "s/d", "s/f", "s/c", "s/a"}},
		{"explicit name order", with(base, func(q *sq) { q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("__name__")} }), []string{"s/f", "s/e", "s/d", "s/c", "s/b", "s/a"}},
		{"implicit inequality order", where("s", ff("score", opGt, in(5))), []string{"s/a", "s/b", "s/c", "s/f"}},
		{"implicit inequality fields lexicographic", where("s", and(ff("score", opGe, in(10)), ff("age", opGe, in(20)))), []string{"s/b", "s/a", "s/c"}},
		{"implicit order follows last direction", with(where("s", ff("score", opGe, in(10))), func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("team")}
		}), []string{"s/f", "s/c", "s/a", "s/b"}},
		{"start at (before)", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(true, in(20))
		}), []string{"s/b", "s/c", "s/f"}},
		{"start after", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(false, in(20))
		}), []string{"s/f"}},
		{"start after full cursor with name", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(false, in(20), rf("s/b"))
		}), []string{"s/c", "s/f"}},
		{"start at full cursor with name", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(true, db(20), rf("s/c"))
		}), []string{"s/c", "s/f"}},
		{"end at", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.EndAt = cursor(false, in(20))
		}), []string{"s/d", "s/a", "s/b", "s/c"}},
		{"end before", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.EndAt = cursor(true, in(20))
		}), []string{"s/d", "s/a"}},
		{"start and end", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(false, in(5))
			q.EndAt = cursor(true, in(30))
		}), []string{"s/a", "s/b", "s/c"}},
		{"cursor between values", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(true, db(12.5))
		}), []string{"s/b", "s/c", "s/f"}},
		{"cursor of another type", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(true, st("x"))
		}), []string{}},
		{"desc cursors", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("score")}
			q.StartAt = cursor(false, in(30))
			q.EndAt = cursor(false, in(10))
		}), []string{"s/c", "s/b", "s/a"}},
		{"partial cursor on two orders", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("team"), asc("score")}
			q.StartAt = cursor(false, st("blue"))
		}), []string{"s/a", "s/c", "s/f"}},
		{"name cursor only", with(base, func(q *sq) {
			q.StartAt = cursor(false, rf("s/c"))
		}), []string{"s/d", "s/e", "s/f"}},
		{"offset", with(base, func(q *sq) { q.Offset = 2 }), []string{"s/c", "s/d", "s/e", "s/f"}},
		{"limit", with(base, func(q *sq) { q.Limit = limit(2) }), []string{"s/a", "s/b"}},
		{"limit zero", with(base, func(q *sq) { q.Limit = limit(0) }), []string{}},
		{"offset and limit", with(base, func(q *sq) { q.Offset = 1; q.Limit = limit(2) }), []string{"s/b", "s/c"}},
		{"offset past end", with(base, func(q *sq) { q.Offset = 100 }), []string{}},
		{"offset after cursor", with(base, func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("score")}
			q.StartAt = cursor(true, in(10))
			q.Offset = 1
			q.Limit = limit(2)
		}), []string{"s/b", "s/c"}},
		{"limit to last style: reversed order, flipped cursor", with(base, func(q *sq) {
			// The client asks for the last 2 by score before 30: it reverses
			// the order, turns the end cursor into a start cursor, and
			// reverses the results itself.
			q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("score"), desc("__name__")}
			q.StartAt = cursor(false, in(30))
			q.Limit = limit(2)
		}), []string{"s/c", "s/b"}},
		{"filter, order, cursor and limit", with(where("s", ff("team", opEq, st("red"))), func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("score")}
			q.StartAt = cursor(true, in(20))
			q.Limit = limit(1)
		}), []string{"s/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(testRoot, tt.q, docs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := cmp.Diff(tt.want, names(got)); d != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestRunProjection(t *testing.T) {
	docs := []*firestorepb.Document{
		doc("p/1", "a", mp("b", in(1), "c", in(2), "d", in(3)), "x", st("x"), "y", st("y")),
		doc("p/2", "x", st("only x")),
	}
	sel := func(paths ...string) *sq {
		return with(from("p"), func(q *sq) {
			q.Select = &firestorepb.StructuredQuery_Projection{}
			for _, p := range paths {
				q.Select.Fields = append(q.Select.Fields, fref(p))
			}
		})
	}
	tests := []struct {
		name string
		q    *sq
		want []*firestorepb.Document
	}{
		{"no projection", from("p"), docs},
		{"top-level field", sel("x"), []*firestorepb.Document{doc("p/1", "x", st("x")), doc("p/2", "x", st("only x"))}},
		{"nested fields merge", sel("a.c", "a.b", "y"), []*firestorepb.Document{doc("p/1", "a", mp("b", in(1), "c", in(2)), "y", st("y")), doc("p/2")}},
		{"ancestor wins", sel("a.b", "a"), []*firestorepb.Document{doc("p/1", "a", mp("b", in(1), "c", in(2), "d", in(3))), doc("p/2")}},
		{"name only", sel("__name__"), []*firestorepb.Document{doc("p/1"), doc("p/2")}},
		{"empty projection", sel(), []*firestorepb.Document{doc("p/1"), doc("p/2")}},
		{"missing field", sel("zzz"), []*firestorepb.Document{doc("p/1"), doc("p/2")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(testRoot, tt.q, docs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := diff(t, tt.want, got); d != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestRunReturnsCopies(t *testing.T) {
	docs := scoreDocs()
	before := make([]*firestorepb.Document, len(docs))
	for i, d := range docs {
		before[i] = proto.CloneOf(d)
	}
	got, err := Run(testRoot, where("s", ff("score", opGt, in(0))), docs)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(got) == 0 {
		t.Fatal("Run returned no documents")
	}
	for _, d := range got {
		d.Fields["score"] = st("changed")
		d.UpdateTime.Seconds = 999
	}
	if d := diff(t, before, docs); d != "" {
		t.Errorf("inputs changed (-before +after):\n%s", d)
	}
}

func TestRunErrors(t *testing.T) {
	many := func(n int) *firestorepb.Value {
		vs := make([]*firestorepb.Value, n)
		for i := range vs {
			vs[i] = in(int64(i))
		}
		return arr(vs...)
	}
	tests := []struct {
		name   string
		parent string
		q      *sq
		errHas string
	}{
		{"nil query", testRoot, nil, "missing"},
		{"bad parent", "projects/p/documents", from("c"), "must start with"},
		{"collection parent", testRoot + "/c", from("c"), "not a collection"},
		{"no from", testRoot, &sq{}, "exactly one"},
		{"two froms", testRoot, &sq{From: []*sq_CollectionSelector{{CollectionId: "a"}, {CollectionId: "b"}}}, "exactly one"},
		{"reserved collection", testRoot, from("__x__"), "reserved"},
		{"bad field path", testRoot, where("c", ff("a..b", opEq, in(1))), "empty segment"},
		{"unquoted field path", testRoot, where("c", ff("a-b", opEq, in(1))), "backticks"},
		{"missing value", testRoot, where("c", ff("a", opEq, nil)), "no value"},
		{"unspecified operator", testRoot, where("c", ff("a", firestorepb.StructuredQuery_FieldFilter_OPERATOR_UNSPECIFIED, in(1))), "not supported"},
		{"unspecified unary operator", testRoot, where("c", uf("a", firestorepb.StructuredQuery_UnaryFilter_OPERATOR_UNSPECIFIED)), "not supported"},
		{"empty filter", testRoot, where("c", &firestorepb.StructuredQuery_Filter{}), "no filter type"},
		{"empty composite", testRoot, where("c", and()), "at least one"},
		{"in not array", testRoot, where("c", ff("a", opIn, in(1))), "non-empty array"},
		{"in empty", testRoot, where("c", ff("a", opIn, arr())), "non-empty array"},
		{"in 31 values", testRoot, where("c", ff("a", opIn, many(31))), "at most 30"},
		{"array-contains-any 31 values", testRoot, where("c", ff("a", opAny, many(31))), "at most 30"},
		{"not-in 11 values", testRoot, where("c", ff("a", opNotIn, many(11))), "at most 10"},
		{"not-in with or", testRoot, where("c", or(ff("a", opNotIn, many(2)), ff("b", opEq, in(1)))), "OR"},
		{"not-in with in", testRoot, where("c", and(ff("a", opNotIn, many(2)), ff("b", opIn, many(2)))), "IN"},
		{"not-in with array-contains-any", testRoot, where("c", and(ff("a", opNotIn, many(2)), ff("b", opAny, many(2)))), "ARRAY_CONTAINS_ANY"},
		{"not-in with !=", testRoot, where("c", and(ff("a", opNotIn, many(2)), ff("b", opNe, in(1)))), "NOT_EQUAL"},
		{"two not-in", testRoot, where("c", and(ff("a", opNotIn, many(2)), ff("b", opNotIn, many(2)))), "at most one NOT_IN"},
		{"too many disjunctions", testRoot, where("c", and(ff("a", opIn, many(10)), ff("b", opIn, many(4)))), "disjunctions"},
		{"too many or branches", testRoot, where("c", or(ff("a", opIn, many(30)), ff("b", opEq, in(1)))), "disjunctions"},
		{"name with string", testRoot, where("c", ff("__name__", opEq, st("c/a"))), "reference"},
		{"name in with string", testRoot, where("c", ff("__name__", opIn, arr(rf("c/a"), st("c/b")))), "reference"},
		{"name with bad reference", testRoot, where("c", ff("__name__", opEq, &firestorepb.Value{ValueType: &firestorepb.Value_ReferenceValue{ReferenceValue: "c/a"}})), "must start with"},
		{"name array-contains", testRoot, where("c", ff("__name__", opContains, rf("c/a"))), "not allowed"},
		{"duplicate order", testRoot, with(from("c"), func(q *sq) { q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("a"), desc("a")} }), "more than once"},
		{"cursor too long", testRoot, with(from("c"), func(q *sq) { q.StartAt = cursor(true, rf("c/a"), in(1)) }), "orders by only 1"},
		{"name cursor not reference", testRoot, with(from("c"), func(q *sq) { q.EndAt = cursor(true, st("c/a")) }), "reference"},
		{"cursor value unset", testRoot, with(from("c"), func(q *sq) {
			q.OrderBy = []*firestorepb.StructuredQuery_Order{asc("a")}
			q.StartAt = cursor(true, &firestorepb.Value{})
		}), "no value"},
		{"negative offset", testRoot, with(from("c"), func(q *sq) { q.Offset = -1 }), "offset"},
		{"negative limit", testRoot, with(from("c"), func(q *sq) { q.Limit = limit(-1) }), "limit"},
		{"bad projection", testRoot, with(from("c"), func(q *sq) {
			q.Select = &firestorepb.StructuredQuery_Projection{Fields: []*firestorepb.StructuredQuery_FieldReference{fref("")}}
		}), "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(tt.parent, tt.q, typedDocs())
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Run = %d docs, %v; want an InvalidArgument error", len(got), err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.errHas) {
				t.Errorf("Run error %q does not mention %q", msg, tt.errHas)
			}
		})
	}
}

func TestRunLimitsAccepted(t *testing.T) {
	many := func(n int) *firestorepb.Value {
		vs := make([]*firestorepb.Value, n)
		for i := range vs {
			vs[i] = in(int64(i))
		}
		return arr(vs...)
	}
	tests := []struct {
		name string
		q    *sq
		want []string
	}{
		{"in 30 values", where("c", ff("v", opIn, many(30))), []string{"c/n1", "c/n2", "c/n3"}},
		{"not-in 10 values", where("c", ff("v", opNotIn, many(10))), []string{"c/bool", "c/nan", "c/ts", "c/s", "c/s2", "c/ref", "c/arr", "c/map", "c/nested"}},
		{"30 disjunctions", where("c", and(ff("v", opIn, many(10)), ff("w", opIn, many(3)))), []string{}},
		{"multiple != on different fields", where("c", and(ff("v", opNe, in(1)), ff("a.b", opNe, in(1)))), []string{"c/nested"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(testRoot, tt.q, typedDocs())
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := cmp.Diff(tt.want, names(got)); d != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestRunFindNearest(t *testing.T) {
	docs := []*firestorepb.Document{
		doc("v/a", "e", vec(1, 0)),
		doc("v/b", "e", vec(0, 1)),
		doc("v/c", "e", vec(2, 2)),
		doc("v/d", "e", vec(1, 2, 3)), // other dimension
		doc("v/e", "e", arr(db(1), db(0))),
		doc("v/f", "e", vec(-1, 0)),
	}
	nearest := func(m firestorepb.StructuredQuery_FindNearest_DistanceMeasure, n int32, threshold *float64, resultField string) *sq {
		return with(from("v"), func(q *sq) {
			q.FindNearest = &firestorepb.StructuredQuery_FindNearest{
				VectorField: fref("e"), QueryVector: vec(1, 0), DistanceMeasure: m, Limit: limit(n), DistanceResultField: resultField,
			}
			if threshold != nil {
				q.FindNearest.DistanceThreshold = wrapperspb.Double(*threshold)
			}
		})
	}
	one := 1.0
	tests := []struct {
		name string
		q    *sq
		want []string
	}{
		{"euclidean", nearest(firestorepb.StructuredQuery_FindNearest_EUCLIDEAN, 10, nil, ""), []string{"v/a", "v/b", "v/f", "v/c"}},
		{"euclidean limit", nearest(firestorepb.StructuredQuery_FindNearest_EUCLIDEAN, 2, nil, ""), []string{"v/a", "v/b"}},
		{"euclidean threshold", nearest(firestorepb.StructuredQuery_FindNearest_EUCLIDEAN, 10, &one, ""), []string{"v/a"}},
		{"cosine", nearest(firestorepb.StructuredQuery_FindNearest_COSINE, 10, nil, ""), []string{"v/a", "v/c", "v/b", "v/f"}},
		{"dot product", nearest(firestorepb.StructuredQuery_FindNearest_DOT_PRODUCT, 10, nil, ""), []string{"v/c", "v/a", "v/b", "v/f"}},
		{"dot product threshold", nearest(firestorepb.StructuredQuery_FindNearest_DOT_PRODUCT, 10, &one, ""), []string{"v/c", "v/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Run(testRoot, tt.q, docs)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := cmp.Diff(tt.want, names(got)); d != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", d)
			}
		})
	}
	t.Run("distance result field", func(t *testing.T) {
		got, err := Run(testRoot, nearest(firestorepb.StructuredQuery_FindNearest_EUCLIDEAN, 1, nil, "dist"), docs)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		want := []*firestorepb.Document{doc("v/a", "e", vec(1, 0), "dist", db(0))}
		if d := diff(t, want, got); d != "" {
			t.Errorf("Run mismatch (-want +got):\n%s", d)
		}
	})
	t.Run("limit out of range", func(t *testing.T) {
		_, err := Run(testRoot, nearest(firestorepb.StructuredQuery_FindNearest_EUCLIDEAN, 1001, nil, ""), docs)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Run error = %v, want InvalidArgument", err)
		}
	})
}

func BenchmarkRun(b *testing.B) {
	docs := make([]*firestorepb.Document, 0, 10000)
	for i := range 10000 {
		coll := "players"
		if i%4 == 0 {
			coll = "other"
		}
		docs = append(docs, doc(fmt.Sprintf("%s/p%05d", coll, i),
			"score", in(int64(i*7919%10007)),
			"team", st(fmt.Sprintf("t%d", i%10)),
			"save", mp("coins", in(int64(i)), "level", db(float64(i%50)))))
	}
	q := with(where("players", and(ff("team", opIn, arr(st("t1"), st("t3"), st("t5"))), ff("save.level", opGe, in(10)))), func(q *sq) {
		q.OrderBy = []*firestorepb.StructuredQuery_Order{desc("score")}
		q.Limit = limit(50)
	})
	b.ResetTimer()
	for b.Loop() {
		got, err := Run(testRoot, q, docs)
		if err != nil || len(got) != 50 {
			b.Fatalf("Run = %d docs, %v", len(got), err)
		}
	}
}
