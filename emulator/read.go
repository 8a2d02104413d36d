package emulator

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// readView says which state a read sees: the latest state (under the
// transaction's locks for a read-write transaction) or the state at a time.
type readView struct {
	t     *txn   // the transaction, if any
	at    int64  // fixed read time (read-only transaction or read_time); 0 = latest
	newID []byte // id of a transaction begun by this read, to answer once
	done  func()
}

func (v *readView) close() {
	if v.done != nil {
		v.done()
	}
	if v.t != nil {
		v.t.opMu.Unlock()
	}
}

// locking reports whether reads must lock what they read.
func (v *readView) locking() bool { return v.t != nil && !v.t.readOnly }

// checkReadTime validates a requested read time: not in the future and
// within the version retention.
func (s *Server) checkReadTime(ts *timestamppb.Timestamp) (int64, error) {
	if err := ts.CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "invalid read_time: %v", err)
	}
	t := microsOf(ts)
	now := s.clock.readTime()
	if t > now {
		return 0, status.Errorf(codes.InvalidArgument, "read_time %s is in the future", ts.AsTime().Format(time.RFC3339Nano))
	}
	if t < now-s.retention.Microseconds() {
		return 0, status.Error(codes.FailedPrecondition, "The requested snapshot version is too old.")
	}
	return t, nil
}

// openView resolves the consistency selector of a read request.
func (s *Server) openView(db *database, txID []byte, newTxn *firestorepb.TransactionOptions, readTime *timestamppb.Timestamp) (*readView, error) {
	n := 0
	if len(txID) > 0 {
		n++
	}
	if newTxn != nil {
		n++
	}
	if readTime != nil {
		n++
	}
	if n > 1 {
		return nil, status.Errorf(codes.InvalidArgument, "at most one of transaction, new_transaction and read_time may be set")
	}
	v := &readView{}
	switch {
	case len(txID) > 0:
		t, done, err := s.useTxn(db, txID)
		if err != nil {
			return nil, err
		}
		t.opMu.Lock()
		v.t, v.done = t, done
	case newTxn != nil:
		t, err := s.beginTxn(db, newTxn)
		if err != nil {
			return nil, err
		}
		t2, done, err := s.useTxn(db, []byte(t.id))
		if err != nil {
			return nil, err
		}
		t2.opMu.Lock()
		v.t, v.done, v.newID = t2, done, []byte(t.id)
	case readTime != nil:
		at, err := s.checkReadTime(readTime)
		if err != nil {
			return nil, err
		}
		v.at = at
	}
	if v.t != nil && v.t.readOnly {
		v.at = v.t.readTime
	}
	return v, nil
}

// takeNewID returns the new transaction id once, for the first response.
func (v *readView) takeNewID() []byte {
	id := v.newID
	v.newID = nil
	return id
}

// BatchGetDocuments answers one Found or Missing per distinct document.
func (s *Server) BatchGetDocuments(req *firestorepb.BatchGetDocumentsRequest, stream firestorepb.Firestore_BatchGetDocumentsServer) error {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return err
	}
	var names []string
	seen := map[string]bool{}
	for _, n := range req.GetDocuments() {
		if err := s.checkDocName(db, n); err != nil {
			return err
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	var mask [][]string
	if m := req.GetMask(); m != nil {
		mask, err = parseMask(m)
		if err != nil {
			return err
		}
	}
	v, err := s.openView(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		return err
	}
	defer v.close()
	if v.locking() {
		if err := s.lockDocs(stream.Context(), v.t, names); err != nil {
			return err
		}
	}
	docs := make([]*firestorepb.Document, len(names))
	db.mu.RLock()
	at := v.at
	readT := at
	if at == 0 {
		readT = s.clock.readTime()
	}
	for i, n := range names {
		docs[i] = db.getLocked(n, at)
	}
	db.mu.RUnlock()

	s.counters.addReads(db.project, int64(len(names)))
	readTS := tsMicros(readT)
	if len(names) == 0 && v.newID != nil {
		return stream.Send(&firestorepb.BatchGetDocumentsResponse{Transaction: v.takeNewID(), ReadTime: readTS})
	}
	for i, n := range names {
		resp := &firestorepb.BatchGetDocumentsResponse{ReadTime: readTS, Transaction: v.takeNewID()}
		if d := docs[i]; d != nil {
			resp.Result = &firestorepb.BatchGetDocumentsResponse_Found{Found: project(d, mask)}
		} else {
			resp.Result = &firestorepb.BatchGetDocumentsResponse_Missing{Missing: n}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// GetDocument reads one document; a missing one is NOT_FOUND.
func (s *Server) GetDocument(ctx context.Context, req *firestorepb.GetDocumentRequest) (*firestorepb.Document, error) {
	db, err := s.resourceDatabase(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.checkDocName(db, req.GetName()); err != nil {
		return nil, err
	}
	var mask [][]string
	if m := req.GetMask(); m != nil {
		if mask, err = parseMask(m); err != nil {
			return nil, err
		}
	}
	v, err := s.openView(db, req.GetTransaction(), nil, req.GetReadTime())
	if err != nil {
		return nil, err
	}
	defer v.close()
	if v.locking() {
		if err := s.lockDocs(ctx, v.t, []string{req.GetName()}); err != nil {
			return nil, err
		}
	}
	db.mu.RLock()
	d := db.getLocked(req.GetName(), v.at)
	db.mu.RUnlock()
	s.counters.addReads(db.project, 1)
	if d == nil {
		return nil, status.Errorf(codes.NotFound, "Document %q not found.", req.GetName())
	}
	return project(d, mask), nil
}

// parseMask parses the field paths of a document mask.
func parseMask(m *firestorepb.DocumentMask) ([][]string, error) {
	out := make([][]string, 0, len(m.GetFieldPaths()))
	for _, p := range m.GetFieldPaths() {
		path, err := query.ParseFieldPath(p)
		if err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}

// project returns d with only the masked fields (all of them for a nil
// mask). Stored documents are never modified.
func project(d *firestorepb.Document, mask [][]string) *firestorepb.Document {
	if mask == nil {
		return d
	}
	fields := map[string]*firestorepb.Value{}
	for _, p := range mask {
		if v, ok := query.Lookup(d.GetFields(), p); ok {
			query.SetPath(fields, p, v)
		}
	}
	return &firestorepb.Document{Name: d.GetName(), Fields: fields, CreateTime: d.GetCreateTime(), UpdateTime: d.GetUpdateTime()}
}

// ListCollectionIds lists the collections directly under a document or the
// database root.
func (s *Server) ListCollectionIds(ctx context.Context, req *firestorepb.ListCollectionIdsRequest) (*firestorepb.ListCollectionIdsResponse, error) {
	parent := req.GetParent()
	db, err := s.queryDatabase(parent)
	if err != nil {
		return nil, err
	}
	var at int64
	if rt := req.GetReadTime(); rt != nil {
		if at, err = s.checkReadTime(rt); err != nil {
			return nil, err
		}
	}
	prefix := parent + "/"
	ids := map[string]bool{}
	db.mu.RLock()
	for _, d := range db.liveDocsLocked(prefix, at) {
		rest := strings.TrimPrefix(d.GetName(), prefix)
		if i := strings.IndexByte(rest, '/'); i > 0 {
			ids[rest[:i]] = true
		}
	}
	db.mu.RUnlock()
	all := make([]string, 0, len(ids))
	for id := range ids {
		all = append(all, id)
	}
	sort.Strings(all)
	page, next := paginate(all, req.GetPageToken(), int(req.GetPageSize()), func(s string) string { return s }, strings.Compare)
	return &firestorepb.ListCollectionIdsResponse{CollectionIds: page, NextPageToken: next}, nil
}

// paginate returns the items after token (the key of the last item of the
// previous page), at most size of them (0 = all), and the next token. The
// items are sorted by key in the order of compare.
func paginate[T any](items []T, token string, size int, key func(T) string, compare func(a, b string) int) ([]T, string) {
	start := 0
	if token != "" {
		start = sort.Search(len(items), func(i int) bool { return compare(key(items[i]), token) > 0 })
	}
	items = items[start:]
	if size <= 0 || size >= len(items) {
		return items, ""
	}
	return items[:size], key(items[size-1])
}

// ListDocuments lists the documents of one collection (or of every
// collection directly under parent when collection_id is empty), by name.
// With show_missing it also lists documents that do not exist but have
// subcollections, without create and update times.
func (s *Server) ListDocuments(ctx context.Context, req *firestorepb.ListDocumentsRequest) (*firestorepb.ListDocumentsResponse, error) {
	parent := req.GetParent()
	db, err := s.queryDatabase(parent)
	if err != nil {
		return nil, err
	}
	if ob := req.GetOrderBy(); ob != "" && ob != "__name__" && ob != "__name__ asc" {
		return nil, status.Errorf(codes.InvalidArgument, "ListDocuments supports order_by \"__name__\" only")
	}
	var mask [][]string
	if m := req.GetMask(); m != nil {
		if mask, err = parseMask(m); err != nil {
			return nil, err
		}
	}
	v, err := s.openView(db, req.GetTransaction(), nil, req.GetReadTime())
	if err != nil {
		return nil, err
	}
	defer v.close()
	coll := req.GetCollectionId()
	if v.locking() && coll != "" {
		if err := db.locks.acquire(ctx, v.t.owner, "r:"+parent+"/"+coll, lockShared); err != nil {
			return nil, err
		}
	}
	prefix := parent + "/"
	if coll != "" {
		prefix += coll + "/"
	}
	byName := map[string]*firestorepb.Document{}
	db.mu.RLock()
	for _, d := range db.liveDocsLocked(prefix, v.at) {
		rest := strings.TrimPrefix(d.GetName(), parent+"/")
		parts := strings.Split(rest, "/")
		if len(parts) < 2 {
			continue
		}
		name := parent + "/" + parts[0] + "/" + parts[1]
		if len(parts) == 2 {
			byName[name] = project(d, mask)
		} else if req.GetShowMissing() {
			if _, ok := byName[name]; !ok {
				byName[name] = nil
			}
		}
	}
	db.mu.RUnlock()
	docs := make([]*firestorepb.Document, 0, len(byName))
	for name, d := range byName {
		if d == nil {
			d = &firestorepb.Document{Name: name}
		}
		docs = append(docs, d)
	}
	// Names sort as Firestore orders them: numeric ids first, by number.
	slices.SortFunc(docs, func(a, b *firestorepb.Document) int { return query.CompareNames(a.GetName(), b.GetName()) })
	page, next := paginate(docs, req.GetPageToken(), int(req.GetPageSize()), func(d *firestorepb.Document) string { return d.GetName() }, query.CompareNames)
	s.counters.addReads(db.project, int64(max(len(page), 1)))
	return &firestorepb.ListDocumentsResponse{Documents: page, NextPageToken: next}, nil
}
