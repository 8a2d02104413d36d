package query

import (
	"math"
	"strings"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type agg = firestorepb.StructuredAggregationQuery_Aggregation

func count(alias string) *agg {
	return &agg{Alias: alias, Operator: &firestorepb.StructuredAggregationQuery_Aggregation_Count_{Count: &firestorepb.StructuredAggregationQuery_Aggregation_Count{}}}
}

func countUpTo(alias string, n int64) *agg {
	return &agg{Alias: alias, Operator: &firestorepb.StructuredAggregationQuery_Aggregation_Count_{Count: &firestorepb.StructuredAggregationQuery_Aggregation_Count{UpTo: wrapperspb.Int64(n)}}}
}

func sumOf(alias, path string) *agg {
	return &agg{Alias: alias, Operator: &firestorepb.StructuredAggregationQuery_Aggregation_Sum_{Sum: &firestorepb.StructuredAggregationQuery_Aggregation_Sum{Field: fref(path)}}}
}

func avgOf(alias, path string) *agg {
	return &agg{Alias: alias, Operator: &firestorepb.StructuredAggregationQuery_Aggregation_Avg_{Avg: &firestorepb.StructuredAggregationQuery_Aggregation_Avg{Field: fref(path)}}}
}

func aggQuery(q *sq, aggs ...*agg) *firestorepb.StructuredAggregationQuery {
	return &firestorepb.StructuredAggregationQuery{
		QueryType:    &firestorepb.StructuredAggregationQuery_StructuredQuery{StructuredQuery: q},
		Aggregations: aggs,
	}
}

func TestAggregate(t *testing.T) {
	docs := []*firestorepb.Document{
		doc("i/a", "n", in(1), "m", in(math.MaxInt64)),
		doc("i/b", "n", in(2), "m", in(1)),
		doc("i/c", "n", in(3), "s", st("x")),
		doc("i/d", "s", st("y"), "n", st("not a number")),
		doc("i/e", "n", nul()),
		doc("d/a", "x", in(1)),
		doc("d/b", "x", db(0.5)),
		doc("d/c", "x", db(math.NaN())),
		doc("d/d", "x", in(2)),
	}
	tests := []struct {
		name string
		q    *firestorepb.StructuredAggregationQuery
		want map[string]*firestorepb.Value
	}{
		{"count", aggQuery(from("i"), count("c")), map[string]*firestorepb.Value{"c": in(5)}},
		{"count empty", aggQuery(from("none"), count("c")), map[string]*firestorepb.Value{"c": in(0)}},
		{"count up to", aggQuery(from("i"), countUpTo("c", 2)), map[string]*firestorepb.Value{"c": in(2)}},
		{"count up to above total", aggQuery(from("i"), countUpTo("c", 100)), map[string]*firestorepb.Value{"c": in(5)}},
		{"count respects limit", aggQuery(with(from("i"), func(q *sq) { q.Limit = limit(3) }), count("c")), map[string]*firestorepb.Value{"c": in(3)}},
		{"count respects offset", aggQuery(with(from("i"), func(q *sq) { q.Offset = 4 }), count("c")), map[string]*firestorepb.Value{"c": in(1)}},
		{"count with filter", aggQuery(where("i", ff("n", opGe, in(2))), count("c")), map[string]*firestorepb.Value{"c": in(2)}},
		{"sum ints skips non-numbers", aggQuery(from("i"), sumOf("s", "n")), map[string]*firestorepb.Value{"s": in(6)}},
		{"sum empty is zero", aggQuery(from("none"), sumOf("s", "n")), map[string]*firestorepb.Value{"s": in(0)}},
		{"sum of no numbers is zero", aggQuery(from("i"), sumOf("s", "s")), map[string]*firestorepb.Value{"s": in(0)}},
		{"sum overflow becomes double", aggQuery(from("i"), sumOf("s", "m")), map[string]*firestorepb.Value{"s": db(float64(math.MaxInt64) + 1)}},
		{"sum with double", aggQuery(where("d", ff("x", opNe, db(math.NaN()))), sumOf("s", "x")), map[string]*firestorepb.Value{"s": db(3.5)}},
		{"sum with NaN", aggQuery(from("d"), sumOf("s", "x")), map[string]*firestorepb.Value{"s": db(math.NaN())}},
		{"sum respects limit", aggQuery(with(from("i"), func(q *sq) { q.Limit = limit(2) }), sumOf("s", "n")), map[string]*firestorepb.Value{"s": in(3)}},
		{"avg", aggQuery(from("i"), avgOf("a", "n")), map[string]*firestorepb.Value{"a": db(2)}},
		{"avg mixed", aggQuery(where("d", uf("x", opNotNaN)), avgOf("a", "x")), map[string]*firestorepb.Value{"a": db(3.5 / 3)}},
		{"avg NaN", aggQuery(from("d"), avgOf("a", "x")), map[string]*firestorepb.Value{"a": db(math.NaN())}},
		{"avg empty is null", aggQuery(from("none"), avgOf("a", "n")), map[string]*firestorepb.Value{"a": nul()}},
		{"avg of no numbers is null", aggQuery(from("i"), avgOf("a", "s")), map[string]*firestorepb.Value{"a": nul()}},
		{"avg missing field is null", aggQuery(from("i"), avgOf("a", "zzz")), map[string]*firestorepb.Value{"a": nul()}},
		{"unnamed aliases", aggQuery(from("i"), count(""), sumOf("total", "n"), avgOf("", "n")),
			// Only documents having n: a, b, c, d, e.
			map[string]*firestorepb.Value{"field_1": in(5), "total": in(6), "field_2": db(2)}},
		{"unnamed aliases skip taken names", aggQuery(from("i"), count(""), count("field_1")),
			map[string]*firestorepb.Value{"field_2": in(5), "field_1": in(5)}},
		{"several aggregations see only documents with every field", aggQuery(from("i"), count("c"), sumOf("sn", "n"), sumOf("sm", "m")),
			map[string]*firestorepb.Value{"c": in(2), "sn": in(3), "sm": db(float64(math.MaxInt64) + 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Aggregate(testRoot, tt.q, docs)
			if err != nil {
				t.Fatalf("Aggregate: %v", err)
			}
			if d := diff(t, tt.want, got); d != "" {
				t.Errorf("Aggregate mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestAggregateErrors(t *testing.T) {
	tests := []struct {
		name   string
		q      *firestorepb.StructuredAggregationQuery
		errHas string
	}{
		{"no query", &firestorepb.StructuredAggregationQuery{Aggregations: []*agg{count("c")}}, "no structured query"},
		{"no aggregations", aggQuery(from("i")), "between 1 and 5"},
		{"six aggregations", aggQuery(from("i"), count("a"), count("b"), count("c"), count("d"), count("e"), count("f")), "between 1 and 5"},
		{"duplicate alias", aggQuery(from("i"), count("a"), sumOf("a", "n")), "more than once"},
		{"reserved alias", aggQuery(from("i"), count("__a__")), "reserved"},
		{"up to zero", aggQuery(from("i"), countUpTo("c", 0)), "greater than zero"},
		{"no operator", aggQuery(from("i"), &agg{Alias: "x"}), "no operator"},
		{"sum without field", aggQuery(from("i"), &agg{Alias: "x", Operator: &firestorepb.StructuredAggregationQuery_Aggregation_Sum_{Sum: &firestorepb.StructuredAggregationQuery_Aggregation_Sum{}}}), "missing field"},
		{"bad nested query", aggQuery(with(from("i"), func(q *sq) { q.Offset = -1 }), count("c")), "offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Aggregate(testRoot, tt.q, nil)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Aggregate = %v, %v; want an InvalidArgument error", got, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.errHas) {
				t.Errorf("Aggregate error %q does not mention %q", msg, tt.errHas)
			}
		})
	}
}
