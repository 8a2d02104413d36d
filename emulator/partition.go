package emulator

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// minPartitionSize is the fewest documents a partition holds: Cloud Firestore
// does not split a query into partitions of fewer than 128 documents, so a
// collection group with fewer than 256 documents is one partition.
const minPartitionSize = 128

// PartitionQuery answers split points that divide a collection group query
// into partitions of nearly equal size, covering every document exactly once:
// for points A and B, the queries "end_at A", "start_at A, end_at B" and
// "start_at B" (the Go, Java and Node clients use start_at and end_before)
// return the whole result. It answers at most partition_count points and at
// most page_size per page (0 = all), with a next_page_token that reads the
// same snapshot for the following pages; fewer when partitions would hold
// fewer than minPartitionSize documents, none for small groups.
//
// As the API documents, the parent must be the database's documents root and
// the query a collection-group query (all_descendants) ordered by __name__
// ascending, with no filters, other orders, limit, offset or cursors.
func (s *Server) PartitionQuery(ctx context.Context, req *firestorepb.PartitionQueryRequest) (*firestorepb.PartitionQueryResponse, error) {
	db, err := s.resourceDatabase(req.GetParent())
	if err != nil {
		return nil, err
	}
	if req.GetParent() != db.root {
		return nil, status.Errorf(codes.InvalidArgument, "PartitionQuery parent %q: document resource names are not supported; only the database's documents root %q", req.GetParent(), db.root)
	}
	q := req.GetStructuredQuery()
	if q == nil {
		return nil, status.Errorf(codes.InvalidArgument, "PartitionQuery needs a structured_query")
	}
	if err := checkPartitionQuery(q); err != nil {
		return nil, err
	}
	if req.GetPartitionCount() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "partition_count must be positive, got %d", req.GetPartitionCount())
	}
	if req.GetPageSize() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "page_size must not be negative, got %d", req.GetPageSize())
	}

	readTime := req.GetReadTime()
	offset := 0
	if tok := req.GetPageToken(); tok != "" {
		var at int64
		if _, err := fmt.Sscanf(tok, "%d/%d", &at, &offset); err != nil || at <= 0 || offset < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page_token %q", tok)
		}
		readTime = tsMicros(at)
	}
	v, err := s.openView(db, nil, nil, readTime)
	if err != nil {
		return nil, err
	}
	defer v.close()
	names, readT, err := s.partitionNames(db, v, q)
	if err != nil {
		return nil, err
	}

	points := splitPoints(names, req.GetPartitionCount())
	if offset > len(points) {
		offset = len(points)
	}
	page := points[offset:]
	next := ""
	if size := int(req.GetPageSize()); size > 0 && size < len(page) {
		page = page[:size]
		next = fmt.Sprintf("%d/%d", readT, offset+size)
	}
	resp := &firestorepb.PartitionQueryResponse{NextPageToken: next}
	for _, name := range page {
		resp.Partitions = append(resp.Partitions, &firestorepb.Cursor{Values: []*firestorepb.Value{
			{ValueType: &firestorepb.Value_ReferenceValue{ReferenceValue: name}},
		}})
	}
	return resp, nil
}

// checkPartitionQuery checks that q is what PartitionQuery supports.
func checkPartitionQuery(q *firestorepb.StructuredQuery) error {
	from := q.GetFrom()
	if len(from) != 1 || !from[0].GetAllDescendants() {
		return status.Errorf(codes.InvalidArgument, "PartitionQuery supports only collection group queries (one collection selector with all_descendants)")
	}
	switch {
	case q.GetWhere() != nil:
		return status.Errorf(codes.InvalidArgument, "PartitionQuery does not support filters")
	case q.GetLimit() != nil, q.GetOffset() != 0:
		return status.Errorf(codes.InvalidArgument, "PartitionQuery does not support limit or offset")
	case q.GetStartAt() != nil, q.GetEndAt() != nil:
		return status.Errorf(codes.InvalidArgument, "PartitionQuery does not support start_at or end_at cursors")
	case q.GetFindNearest() != nil:
		return status.Errorf(codes.InvalidArgument, "PartitionQuery does not support find_nearest")
	}
	orders := q.GetOrderBy()
	if len(orders) != 1 || orders[0].GetField().GetFieldPath() != "__name__" || orders[0].GetDirection() == firestorepb.StructuredQuery_DESCENDING {
		return status.Errorf(codes.InvalidArgument, "PartitionQuery needs the query ordered by __name__ ascending, and by nothing else")
	}
	return nil
}

// partitionNames returns the names of the documents the query selects, in
// query order, as the view sees them, and the read time of that state.
func (s *Server) partitionNames(db *database, v *readView, q *firestorepb.StructuredQuery) ([]string, int64, error) {
	nameQuery := proto.CloneOf(q)
	nameQuery.Select = &firestorepb.StructuredQuery_Projection{Fields: []*firestorepb.StructuredQuery_FieldReference{{FieldPath: "__name__"}}}
	db.mu.RLock()
	readT := v.at
	if readT == 0 {
		readT = s.clock.readTime()
	}
	docs := candidatesLocked(db, db.root, nameQuery, v.at)
	db.mu.RUnlock()
	results, err := query.Run(db.root, nameQuery, docs)
	if err != nil {
		return nil, 0, err
	}
	out := make([]string, len(results))
	for i, d := range results {
		out[i] = d.GetName()
	}
	return out, readT, nil
}

// splitPoints chooses up to count split points among names (sorted) that cut
// them into equal parts of at least minPartitionSize names: the first name of
// every part after the first.
func splitPoints(names []string, count int64) []string {
	parts := int64(len(names) / minPartitionSize)
	parts = min(parts, count+1)
	if parts < 2 {
		return nil
	}
	n := int64(len(names))
	points := make([]string, 0, parts-1)
	for i := int64(1); i < parts; i++ {
		points = append(points, names[i*n/parts])
	}
	return points
}
