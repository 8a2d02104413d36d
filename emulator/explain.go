package emulator

import (
	"strconv"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// queryPlan is what the server knows of a query before running it: the
// indexes it reads and the Query Explain options asked for. A nil plan
// means neither an index check nor an explanation is wanted.
type queryPlan struct {
	explain *firestorepb.ExplainOptions
	used    []usedIndex
	started time.Time
}

// planQuery checks a query's indexes (with Options.Indexes) and plans its
// explanation (with explain options). Invalid queries fail first with
// INVALID_ARGUMENT, as in Firestore; then a missing index fails with
// FAILED_PRECONDITION. aq is set for an aggregation over q.
func (s *Server) planQuery(db *database, parent string, q *firestorepb.StructuredQuery, aq *firestorepb.StructuredAggregationQuery, explain *firestorepb.ExplainOptions) (*queryPlan, error) {
	if s.indexes == nil && explain == nil {
		return nil, nil
	}
	started := time.Now()
	var aggFields [][]string
	if aq != nil {
		if _, err := query.Aggregate(parent, aq, nil); err != nil {
			return nil, err
		}
		aggFields = aggregationFields(aq)
	} else if _, err := query.Run(parent, q, nil); err != nil {
		return nil, err
	}
	used, err := planIndexes(s.indexes, s.indexes != nil, db.name, queryIndexNeeds(q, aggFields))
	if err != nil {
		return nil, err
	}
	return &queryPlan{explain: explain, used: used, started: started}, nil
}

// aggregationFields lists the fields of SUM and AVG aggregations.
func aggregationFields(aq *firestorepb.StructuredAggregationQuery) [][]string {
	var out [][]string
	for _, a := range aq.GetAggregations() {
		var ref *firestorepb.StructuredQuery_FieldReference
		switch op := a.GetOperator().(type) {
		case *firestorepb.StructuredAggregationQuery_Aggregation_Sum_:
			ref = op.Sum.GetField()
		case *firestorepb.StructuredAggregationQuery_Aggregation_Avg_:
			ref = op.Avg.GetField()
		default:
			continue
		}
		out = append(out, mustPath(ref.GetFieldPath()))
	}
	return out
}

// planOnly reports whether the request asked for the plan alone
// (explain_options without analyze): no documents, no execution.
func (p *queryPlan) planOnly() bool {
	return p != nil && p.explain != nil && !p.explain.GetAnalyze()
}

// summary is the plan summary: the indexes used.
func (p *queryPlan) summary() *firestorepb.PlanSummary {
	ps := &firestorepb.PlanSummary{}
	for _, u := range p.used {
		st, err := structpb.NewStruct(map[string]any{"query_scope": u.scope(), "properties": u.properties()})
		if err == nil {
			ps.IndexesUsed = append(ps.IndexesUsed, st)
		}
	}
	return ps
}

// planMetrics are the metrics of a plan-only explanation.
func (p *queryPlan) planMetrics() *firestorepb.ExplainMetrics {
	return &firestorepb.ExplainMetrics{PlanSummary: p.summary()}
}

// execution is what running a query cost.
type execution struct {
	results        int64 // documents or aggregation results returned
	reads          int64 // billed read operations
	indexEntries   int64 // index entries scanned
	documents      int64 // documents scanned
	entriesBilled  int64 // index entries billed (aggregations)
	documentBilled int64 // documents billed (queries)
}

// analyzedMetrics are the metrics of an analyzed query: the plan and the
// execution stats, nil unless the request asked for analyze.
func (p *queryPlan) analyzedMetrics(e execution) *firestorepb.ExplainMetrics {
	if p == nil || p.explain == nil || !p.explain.GetAnalyze() {
		return nil
	}
	minCost := int64(0)
	if e.documentBilled == 0 && e.entriesBilled == 0 {
		minCost = 1
	}
	debug, err := structpb.NewStruct(map[string]any{
		"index_entries_scanned": itoa(e.indexEntries),
		"documents_scanned":     itoa(e.documents),
		"billing_details": map[string]any{
			"documents_billable":     itoa(e.documentBilled),
			"index_entries_billable": itoa(e.entriesBilled),
			"small_ops":              "0",
			"min_query_cost":         itoa(minCost),
		},
	})
	if err != nil {
		debug = nil
	}
	return &firestorepb.ExplainMetrics{
		PlanSummary: p.summary(),
		ExecutionStats: &firestorepb.ExecutionStats{
			ResultsReturned:   e.results,
			ExecutionDuration: durationpb.New(time.Since(p.started)),
			ReadOperations:    e.reads,
			DebugStats:        debug,
		},
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
