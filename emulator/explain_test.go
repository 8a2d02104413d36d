package emulator

import (
	"context"
	"fmt"
	"testing"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/api/iterator"
)

// planOf is a plan summary listing indexes as (scope, properties) pairs.
func planOf(pairs ...string) *firestore.PlanSummary {
	ps := &firestore.PlanSummary{IndexesUsed: []*map[string]any{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		ps.IndexesUsed = append(ps.IndexesUsed, &map[string]any{"query_scope": pairs[i], "properties": pairs[i+1]})
	}
	return ps
}

// debugStats is the debug_stats struct the emulator answers.
func debugStats(entries, docs, docsBilled, entriesBilled, minCost int) *map[string]any {
	return &map[string]any{
		"index_entries_scanned": fmt.Sprint(entries),
		"documents_scanned":     fmt.Sprint(docs),
		"billing_details": map[string]any{
			"documents_billable":     fmt.Sprint(docsBilled),
			"index_entries_billable": fmt.Sprint(entriesBilled),
			"small_ops":              "0",
			"min_query_cost":         fmt.Sprint(minCost),
		},
	}
}

// explainOpts compares explain metrics, ignoring the measured duration
// (checked for presence separately).
var explainOpts = cmp.Options{cmpopts.IgnoreFields(firestore.ExecutionStats{}, "ExecutionDuration")}

func checkDuration(t *testing.T, m *firestore.ExplainMetrics) {
	t.Helper()
	if m == nil || m.ExecutionStats == nil {
		return
	}
	if d := m.ExecutionStats.ExecutionDuration; d == nil || *d < 0 {
		t.Errorf("execution duration = %v, want a non-negative duration", d)
	}
}

// The cases follow the client library's own integration tests against
// Cloud Firestore: five documents ordered by N.
func TestQueryExplain(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	docs := map[string]map[string]any{}
	var all []string
	for i := range 5 {
		id := fmt.Sprintf("d%d", i)
		docs["explain/"+id] = map[string]any{"N": i}
		all = append(all, id)
	}
	seed(t, c, docs)
	plan := planOf("Collection", "(N ASC, __name__ ASC)")
	tests := []struct {
		name    string
		opts    []firestore.RunOption
		wantIDs []string
		want    *firestore.ExplainMetrics
	}{
		{name: "no explain", wantIDs: all},
		{name: "plan only", opts: []firestore.RunOption{firestore.ExplainOptions{}}, wantIDs: []string{}, want: &firestore.ExplainMetrics{PlanSummary: plan}},
		{name: "analyze", opts: []firestore.RunOption{firestore.ExplainOptions{Analyze: true}}, wantIDs: all, want: &firestore.ExplainMetrics{
			PlanSummary: plan,
			ExecutionStats: &firestore.ExecutionStats{
				ResultsReturned: 5, ReadOperations: 5, DebugStats: debugStats(5, 5, 5, 0, 0),
			},
		}},
	}
	for _, tt := range tests {
		q := c.Collection("explain").OrderBy("N", firestore.Asc)
		if len(tt.opts) > 0 {
			q = q.WithRunOptions(tt.opts...)
		}
		check := func(t *testing.T, gotIDs []string, it *firestore.DocumentIterator) {
			t.Helper()
			got, err := it.ExplainMetrics()
			if err != nil {
				t.Fatalf("ExplainMetrics: %v", err)
			}
			if diff := cmp.Diff(tt.wantIDs, gotIDs); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got, explainOpts); diff != "" {
				t.Errorf("explain metrics (-want +got):\n%s", diff)
			}
			checkDuration(t, got)
		}
		t.Run(tt.name+"/GetAll", func(t *testing.T) {
			it := q.Documents(ctx)
			check(t, ids(t, it), it)
		})
		t.Run(tt.name+"/streamed", func(t *testing.T) {
			it := q.Documents(ctx)
			got := []string{}
			for {
				snap, err := it.Next()
				if err == iterator.Done {
					break
				}
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				got = append(got, snap.Ref.ID)
				if len(got) < len(tt.wantIDs) {
					if _, err := it.ExplainMetrics(); err == nil {
						t.Errorf("ExplainMetrics before the end succeeded, want an error")
					}
				}
			}
			check(t, got, it)
		})
		t.Run(tt.name+"/transaction", func(t *testing.T) {
			err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				it := tx.Documents(q)
				check(t, ids(t, it), it)
				return nil
			})
			if err != nil {
				t.Fatalf("transaction: %v", err)
			}
		})
	}
}

func TestAggregationExplain(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{
		"agg/a": {"weight": 0.5, "height": 99, "model": "A"},
		"agg/b": {"weight": 0.5, "height": 98, "model": "A"},
		"agg/c": {"weight": 0.5, "height": 97, "model": "B"},
		"agg/d": {"weight": 2.5, "height": 96, "model": "B"},
	})
	plan := planOf("Collection", "(weight ASC, __name__ ASC)")
	result := firestore.AggregationResult{"count": int64(3), "sum": 1.5, "avg": 0.5}
	tests := []struct {
		name       string
		opts       []firestore.RunOption
		wantResult firestore.AggregationResult
		want       *firestore.ExplainMetrics
	}{
		{name: "no explain", wantResult: result},
		{name: "plan only", opts: []firestore.RunOption{firestore.ExplainOptions{}}, want: &firestore.ExplainMetrics{PlanSummary: plan}},
		{name: "analyze", opts: []firestore.RunOption{firestore.ExplainOptions{Analyze: true}}, wantResult: result, want: &firestore.ExplainMetrics{
			PlanSummary: plan,
			ExecutionStats: &firestore.ExecutionStats{
				ResultsReturned: 1, ReadOperations: 1, DebugStats: debugStats(3, 0, 0, 3, 0),
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := c.Collection("agg").Where("weight", "<=", 1)
			if len(tt.opts) > 0 {
				q = q.WithRunOptions(tt.opts...)
			}
			res, err := q.NewAggregationQuery().WithCount("count").WithSum("weight", "sum").WithAvg("weight", "avg").GetResponse(ctx)
			if err != nil {
				t.Fatalf("GetResponse: %v", err)
			}
			var got firestore.AggregationResult
			if res.Result != nil {
				got = firestore.AggregationResult{}
				for k, v := range res.Result.Data() {
					got[k] = v
				}
			}
			if diff := cmp.Diff(tt.wantResult, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, res.ExplainMetrics, explainOpts); diff != "" {
				t.Errorf("explain metrics (-want +got):\n%s", diff)
			}
			checkDuration(t, res.ExplainMetrics)
		})
	}
}

// TestExplainPlanSummary checks the indexes a plan reports for the common
// query shapes when no index file is loaded: automatic single-field indexes
// where they suffice (merged for equalities), the exact composite otherwise.
func TestExplainPlanSummary(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{"cities/sf": {"country": "USA", "state": "CA", "population": 860000, "regions": []any{"west"}}})
	cities := c.Collection("cities")
	tests := []struct {
		name string
		q    firestore.Query
		want *firestore.PlanSummary
	}{
		{"whole collection", cities.Query, planOf("Collection", "(__name__ ASC)")},
		{"by id descending", cities.OrderBy(firestore.DocumentID, firestore.Desc), planOf("Collection", "(__name__ DESC)")},
		{"one range", cities.Where("population", ">", 1), planOf("Collection", "(population ASC, __name__ ASC)")},
		{"one order descending", cities.OrderBy("population", firestore.Desc), planOf("Collection", "(population DESC, __name__ DESC)")},
		{"merged equalities", cities.Where("state", "==", "CA").Where("country", "==", "USA"),
			planOf("Collection", "(country ASC, __name__ ASC)", "Collection", "(state ASC, __name__ ASC)")},
		{"array-contains and equality", cities.Where("regions", "array-contains", "west").Where("country", "==", "USA"),
			planOf("Collection", "(country ASC, __name__ ASC)", "Collection", "(regions CONTAINS, __name__ ASC)")},
		{"equality and order", cities.Where("country", "==", "USA").OrderBy("population", firestore.Desc),
			planOf("Collection", "(country ASC, population DESC, __name__ DESC)")},
		{"two ranges", cities.Where("population", ">", 1).Where("state", ">", "A"),
			planOf("Collection", "(population ASC, state ASC, __name__ ASC)")},
		{"order on an equality field", cities.Where("country", "==", "USA").OrderBy("country", firestore.Asc),
			planOf("Collection", "(country ASC, __name__ ASC)")},
		{"collection group", c.CollectionGroup("cities").Where("country", "==", "USA"), planOf("Collection Group", "(country ASC, __name__ ASC)")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := tt.q.WithRunOptions(firestore.ExplainOptions{}).Documents(ctx)
			if _, err := it.GetAll(); err != nil {
				t.Fatalf("GetAll: %v", err)
			}
			m, err := it.ExplainMetrics()
			if err != nil {
				t.Fatalf("ExplainMetrics: %v", err)
			}
			if diff := cmp.Diff(tt.want, m.PlanSummary); diff != "" {
				t.Errorf("plan summary (-want +got):\n%s", diff)
			}
		})
	}
}

// With analyze and no match, the one response carries the metrics, and the
// minimum cost of one read shows in the stats.
func TestQueryExplainNoResults(t *testing.T) {
	c, _ := newClient(t)
	it := c.Collection("empty").Where("x", "==", 1).WithRunOptions(firestore.ExplainOptions{Analyze: true}).Documents(context.Background())
	if got := ids(t, it); len(got) != 0 {
		t.Fatalf("ids = %v, want none", got)
	}
	got, err := it.ExplainMetrics()
	if err != nil {
		t.Fatalf("ExplainMetrics: %v", err)
	}
	want := &firestore.ExplainMetrics{
		PlanSummary:    planOf("Collection", "(x ASC, __name__ ASC)"),
		ExecutionStats: &firestore.ExecutionStats{ResultsReturned: 0, ReadOperations: 1, DebugStats: debugStats(0, 0, 0, 0, 1)},
	}
	if diff := cmp.Diff(want, got, explainOpts); diff != "" {
		t.Errorf("explain metrics (-want +got):\n%s", diff)
	}
}
