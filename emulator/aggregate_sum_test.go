package emulator

import (
	"context"
	"fmt"
	"math"
	"testing"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

func aggDouble(d float64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_DoubleValue{DoubleValue: d}}
}

func aggInt(i int64) *firestorepb.Value {
	return &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: i}}
}

// runAggregation runs an aggregation query and returns its results by alias.
func runAggregation(t *testing.T, q *firestore.AggregationQuery) map[string]*firestorepb.Value {
	t.Helper()
	res, err := q.Get(context.Background())
	if err != nil {
		t.Fatalf("aggregation: %v", err)
	}
	got := map[string]*firestorepb.Value{}
	for k, v := range res {
		got[k] = v.(*firestorepb.Value)
	}
	return got
}

// TestAggregationDoubleSums checks sums and averages of doubles against the
// values Cloud Firestore answers for them: the figures asserted by the Go
// client's own integration tests, which run against production
// (cloud.google.com/go/firestore integration_test.go,
// testIntegrationAggregationQueries). Plain left-to-right addition gives
// 31.999999999999996 and 6.3999999999999995 for the StartAfter case.
func TestAggregationDoubleSums(t *testing.T) {
	c, _ := newClient(t)
	coll := c.Collection("w")
	weights := []float64{1.5, 2.6, 3.7, 4.8, 5.9, 6.0, 7.1, 8.2}
	for i, w := range weights {
		if _, err := coll.Doc(fmt.Sprintf("d%d", i)).Set(context.Background(), map[string]any{"weight": w}); err != nil {
			t.Fatal(err)
		}
	}
	from := coll.Where("weight", ">=", 2.6).OrderBy("weight", firestore.Asc)
	tests := []struct {
		name     string
		q        firestore.Query
		n        int64
		sum, avg float64
	}{
		{"all", coll.Where("weight", ">=", 1), 8, 39.8, 4.975},
		{"limit", coll.Where("weight", ">=", 1).OrderBy("weight", firestore.Asc).Limit(4), 4, 12.6, 3.15},
		{"start at", from.StartAt(3.7), 6, 35.7, 5.95},
		{"start after", from.StartAfter(3.7), 5, 32, 6.4},
		{"end at", from.EndAt(7.1), 6, 30.1, 5.016666666666667},
		{"end before", from.EndBefore(7.1), 5, 23, 4.6},
		{"descending", coll.OrderBy("weight", firestore.Desc).Limit(5), 5, 32, 6.4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runAggregation(t, tt.q.NewAggregationQuery().WithCount("n").WithSum("weight", "sum").WithAvg("weight", "avg"))
			want := map[string]*firestorepb.Value{"n": aggInt(tt.n), "sum": aggDouble(tt.sum), "avg": aggDouble(tt.avg)}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestAggregationIntegerSums checks that integer sums stay exact integers
// when the result fits in 64 bits, even if adding them in order overflows on
// the way, and turn into doubles only when the result does not fit (as the
// Android and Java SDKs' integration tests assert against production).
func TestAggregationIntegerSums(t *testing.T) {
	tests := []struct {
		name   string
		values []any
		sum    *firestorepb.Value
		avg    *firestorepb.Value
	}{
		{"small", []any{int64(1), int64(2), int64(10)}, aggInt(13), aggDouble(13.0 / 3)},
		{"overflow on the way", []any{int64(math.MaxInt64), int64(1), int64(-101)}, aggInt(math.MaxInt64 - 100), aggDouble((float64(math.MaxInt64) - 100) / 3)},
		{"negative", []any{int64(math.MaxInt64), int64(-math.MaxInt64), int64(-10), int64(-101)}, aggInt(-111), aggDouble(-111.0 / 4)},
		{"overflow", []any{int64(math.MaxInt64), int64(math.MaxInt64)}, aggDouble(float64(math.MaxInt64) + float64(math.MaxInt64)), aggDouble(float64(math.MaxInt64))},
		{"underflow", []any{int64(math.MinInt64), int64(-1)}, aggDouble(float64(math.MinInt64) - 1), aggDouble(float64(math.MinInt64) / 2)},
		{"ints and doubles", []any{int64(5), 4.5, int64(-2)}, aggDouble(7.5), aggDouble(2.5)},
		{"infinities", []any{math.Inf(1), 1.5}, aggDouble(math.Inf(1)), aggDouble(math.Inf(1))},
		{"opposite infinities", []any{math.Inf(1), math.Inf(-1)}, aggDouble(math.NaN()), aggDouble(math.NaN())},
		{"NaN", []any{int64(1), math.NaN()}, aggDouble(math.NaN()), aggDouble(math.NaN())},
		{"no numbers", []any{"x", true}, aggInt(0), &firestorepb.Value{ValueType: &firestorepb.Value_NullValue{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newClient(t)
			coll := c.Collection("r")
			for i, v := range tt.values {
				if _, err := coll.Doc(fmt.Sprintf("%c", 'a'+i)).Set(context.Background(), map[string]any{"rating": v}); err != nil {
					t.Fatal(err)
				}
			}
			got := runAggregation(t, coll.NewAggregationQuery().WithSum("rating", "sum").WithAvg("rating", "avg"))
			want := map[string]*firestorepb.Value{"sum": tt.sum, "avg": tt.avg}
			if diff := cmp.Diff(want, got, protocmp.Transform(), cmp.Comparer(func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
