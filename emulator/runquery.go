package emulator

import (
	"context"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RunQuery runs a structured query and streams its results. With explain
// options it answers the plan alone (analyze false) or the results with the
// explain metrics on the last response (analyze true).
func (s *Server) RunQuery(req *firestorepb.RunQueryRequest, stream firestorepb.Firestore_RunQueryServer) error {
	db, err := s.queryDatabase(req.GetParent())
	if err != nil {
		return err
	}
	q := req.GetStructuredQuery()
	if q == nil {
		return status.Errorf(codes.InvalidArgument, "RunQuery needs a structured_query")
	}
	plan, err := s.planQuery(db, req.GetParent(), q, nil, req.GetExplainOptions())
	if err != nil {
		return err
	}
	v, err := s.openView(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		return err
	}
	defer v.close()
	if plan.planOnly() {
		// Firestore bills one read for planning a query.
		s.counters.addReads(db.project, 1)
		return stream.Send(&firestorepb.RunQueryResponse{ExplainMetrics: plan.planMetrics(), Transaction: v.takeNewID()})
	}
	docs, readT, err := s.queryCandidates(stream.Context(), db, v, req.GetParent(), q)
	if err != nil {
		return err
	}
	results, err := query.Run(req.GetParent(), q, docs)
	if err != nil {
		return err
	}
	reads := int64(max(len(results), 1))
	s.counters.addReads(db.project, reads)
	metrics := plan.analyzedMetrics(execution{
		results:        int64(len(results)),
		reads:          reads,
		indexEntries:   int64(min(len(results)+int(q.GetOffset()), len(docs))),
		documents:      int64(len(results)),
		documentBilled: int64(len(results)),
	})
	readTS := tsMicros(readT)
	if len(results) == 0 {
		return stream.Send(&firestorepb.RunQueryResponse{ReadTime: readTS, Transaction: v.takeNewID(), ContinuationSelector: &firestorepb.RunQueryResponse_Done{Done: true}, ExplainMetrics: metrics})
	}
	for i, d := range results {
		resp := &firestorepb.RunQueryResponse{Document: d, ReadTime: readTS, Transaction: v.takeNewID()}
		if i == len(results)-1 {
			resp.ContinuationSelector = &firestorepb.RunQueryResponse_Done{Done: true}
			resp.ExplainMetrics = metrics
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// RunAggregationQuery runs count, sum and avg aggregations. With explain
// options it answers the plan alone (analyze false) or the result with the
// explain metrics (analyze true).
func (s *Server) RunAggregationQuery(req *firestorepb.RunAggregationQueryRequest, stream firestorepb.Firestore_RunAggregationQueryServer) error {
	db, err := s.queryDatabase(req.GetParent())
	if err != nil {
		return err
	}
	aq := req.GetStructuredAggregationQuery()
	if aq == nil || aq.GetStructuredQuery() == nil {
		return status.Errorf(codes.InvalidArgument, "RunAggregationQuery needs a structured_aggregation_query")
	}
	plan, err := s.planQuery(db, req.GetParent(), aq.GetStructuredQuery(), aq, req.GetExplainOptions())
	if err != nil {
		return err
	}
	v, err := s.openView(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		return err
	}
	defer v.close()
	if plan.planOnly() {
		s.counters.addReads(db.project, 1)
		return stream.Send(&firestorepb.RunAggregationQueryResponse{ExplainMetrics: plan.planMetrics(), Transaction: v.takeNewID()})
	}
	docs, readT, err := s.queryCandidates(stream.Context(), db, v, req.GetParent(), aq.GetStructuredQuery())
	if err != nil {
		return err
	}
	fields, err := query.Aggregate(req.GetParent(), aq, docs)
	if err != nil {
		return err
	}
	// Firestore bills one read per batch of up to 1,000 index entries.
	reads := int64(len(docs)/1000 + 1)
	s.counters.addReads(db.project, reads)
	var metrics *firestorepb.ExplainMetrics
	if plan != nil && plan.explain.GetAnalyze() {
		matched, err := query.Run(req.GetParent(), aq.GetStructuredQuery(), docs)
		if err != nil {
			return err
		}
		metrics = plan.analyzedMetrics(execution{results: 1, reads: reads, indexEntries: int64(len(matched)), entriesBilled: int64(len(matched))})
	}
	return stream.Send(&firestorepb.RunAggregationQueryResponse{
		Result:         &firestorepb.AggregationResult{AggregateFields: fields},
		ReadTime:       tsMicros(readT),
		Transaction:    v.takeNewID(),
		ExplainMetrics: metrics,
	})
}

// resourceDatabase is the database a resource name (a document, or the
// documents root) belongs to.
func (s *Server) resourceDatabase(name string) (*database, error) {
	dbName, err := databaseOf(name)
	if err != nil {
		return nil, err
	}
	return s.database(dbName)
}

// queryDatabase finds the database of a query's parent and checks the parent.
func (s *Server) queryDatabase(parent string) (*database, error) {
	db, err := s.resourceDatabase(parent)
	if err != nil {
		return nil, err
	}
	if parent != db.root {
		if err := s.checkDocName(db, parent); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// queryLockKeys lists the range locks a query takes in a read-write
// transaction: its collection under parent, or the whole collection group.
func queryLockKeys(parent string, q *firestorepb.StructuredQuery) []string {
	var keys []string
	for _, f := range q.GetFrom() {
		switch {
		case f.GetAllDescendants():
			keys = append(keys, "g:"+f.GetCollectionId())
		default:
			keys = append(keys, "r:"+parent+"/"+f.GetCollectionId())
		}
	}
	if len(keys) == 0 {
		keys = append(keys, "g:")
	}
	return sortedUnique(keys)
}

// queryCandidates returns the documents a query may match, as the view sees
// them, and the read time. In a read-write transaction it first locks the
// queried range, so no write can add, change or remove a match until the
// transaction ends.
func (s *Server) queryCandidates(ctx context.Context, db *database, v *readView, parent string, q *firestorepb.StructuredQuery) ([]*firestorepb.Document, int64, error) {
	if v.locking() {
		for _, k := range queryLockKeys(parent, q) {
			if err := db.locks.acquire(ctx, v.t.owner, k, lockShared); err != nil {
				return nil, 0, err
			}
		}
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	readT := v.at
	if readT == 0 {
		readT = s.clock.readTime()
	}
	return candidatesLocked(db, parent, q, v.at), readT, nil
}
