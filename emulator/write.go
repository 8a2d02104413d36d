package emulator

import (
	"bytes"
	"context"
	"sort"
	"strings"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// maxFieldTransforms is Firestore's limit on field transforms applied to one
// document in one commit.
const maxFieldTransforms = 500

// maxPlainWriteAttempts bounds how often a non-transactional write wounded by
// an older transaction is retried inside the server (it keeps its age, so it
// soon is the oldest).
const maxPlainWriteAttempts = 50

// docChange is one document changed by a commit, for listeners.
type docChange struct {
	name     string
	old, new *firestorepb.Document
	enc      []byte // new, encoded (nil = deleted or not encoded yet)
}

// BeginTransaction starts a read-write or read-only transaction.
func (s *Server) BeginTransaction(ctx context.Context, req *firestorepb.BeginTransactionRequest) (*firestorepb.BeginTransactionResponse, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	t, err := s.beginTxn(db, req.GetOptions())
	if err != nil {
		return nil, err
	}
	return &firestorepb.BeginTransactionResponse{Transaction: []byte(t.id)}, nil
}

// Rollback ends a transaction and releases its locks.
func (s *Server) Rollback(ctx context.Context, req *firestorepb.RollbackRequest) (*emptypb.Empty, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	if len(req.GetTransaction()) != txnIDLen {
		return nil, status.Errorf(codes.InvalidArgument, "invalid transaction id")
	}
	s.txs.mu.Lock()
	t := s.txs.byID[string(req.GetTransaction())]
	s.txs.mu.Unlock()
	if t == nil || t.db != db {
		return nil, errTxnInvalid
	}
	s.endTxn(t, abortRolledBack)
	return &emptypb.Empty{}, nil
}

// Commit applies writes atomically, inside a transaction or on their own.
func (s *Server) Commit(ctx context.Context, req *firestorepb.CommitRequest) (*firestorepb.CommitResponse, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	var t *txn
	if len(req.GetTransaction()) > 0 {
		tx, done, err := s.useTxn(db, req.GetTransaction())
		if err != nil {
			return nil, err
		}
		defer done()
		t = tx
		t.opMu.Lock()
		defer t.opMu.Unlock()
		if t.readOnly {
			if len(req.GetWrites()) > 0 {
				return nil, status.Errorf(codes.InvalidArgument, "Cannot modify entities in a read-only transaction.")
			}
			s.finishTxn(t)
			return &firestorepb.CommitResponse{CommitTime: tsMicros(t.readTime)}, nil
		}
	}
	names, err := s.writeNames(db, req.GetWrites(), false)
	if err != nil {
		if t != nil {
			s.endTxn(t, abortRolledBack)
		}
		return nil, err
	}
	var owner *lockOwner
	if t != nil {
		owner = t.owner
		if err := s.lockForWrite(ctx, db, owner, names); err != nil {
			return nil, err
		}
		if !s.claimCommit(db, owner) {
			return nil, s.txnOpen(t)
		}
		defer s.finishTxn(t)
	} else {
		owner, err = s.lockPlainWrite(ctx, db, names)
		if err != nil {
			return nil, err
		}
	}
	defer db.locks.release(owner)

	db.mu.Lock()
	commitT := s.clock.commitTime()
	results, changes, err := s.applyLocked(db, req.GetWrites(), commitT)
	var lsn uint64
	if err == nil && len(changes) > 0 {
		if s.wal != nil {
			lsn = s.wal.appendCommit(commitT, changes)
		}
		db.notifyLocked(changes, commitT)
	}
	db.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if lsn > 0 {
		if err := s.wal.waitDurable(lsn); err != nil {
			return nil, status.Errorf(codes.Internal, "persist commit: %v", err)
		}
	}
	s.counters.addWrites(db.project, int64(len(req.GetWrites())))
	return &firestorepb.CommitResponse{WriteResults: results, CommitTime: tsMicros(commitT)}, nil
}

// BatchWrite applies writes independently, answering one status per write.
func (s *Server) BatchWrite(ctx context.Context, req *firestorepb.BatchWriteRequest) (*firestorepb.BatchWriteResponse, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	names, err := s.writeNames(db, req.GetWrites(), true)
	if err != nil {
		return nil, err
	}
	owner, err := s.lockPlainWrite(ctx, db, names)
	if err != nil {
		return nil, err
	}
	defer db.locks.release(owner)

	resp := &firestorepb.BatchWriteResponse{
		WriteResults: make([]*firestorepb.WriteResult, len(req.GetWrites())),
		Status:       make([]*statuspb.Status, len(req.GetWrites())),
	}
	db.mu.Lock()
	commitT := s.clock.commitTime()
	var all []docChange
	applied := 0
	for i, w := range req.GetWrites() {
		results, changes, err := s.applyLocked(db, []*firestorepb.Write{w}, commitT)
		if err != nil {
			st := status.Convert(err)
			resp.Status[i] = st.Proto()
			resp.WriteResults[i] = &firestorepb.WriteResult{}
			continue
		}
		applied++
		resp.Status[i] = &statuspb.Status{}
		resp.WriteResults[i] = results[0]
		all = append(all, changes...)
	}
	var lsn uint64
	if len(all) > 0 {
		if s.wal != nil {
			lsn = s.wal.appendCommit(commitT, all)
		}
		db.notifyLocked(all, commitT)
	}
	db.mu.Unlock()
	if lsn > 0 {
		if err := s.wal.waitDurable(lsn); err != nil {
			return nil, status.Errorf(codes.Internal, "persist commit: %v", err)
		}
	}
	s.counters.addWrites(db.project, int64(applied))
	return resp, nil
}

// writeNames checks the target of every write and the number of field
// transforms per document (at most 500 in one commit), and returns the
// document names. unique rejects two writes to one document (BatchWrite).
func (s *Server) writeNames(db *database, writes []*firestorepb.Write, unique bool) ([]string, error) {
	names := make([]string, 0, len(writes))
	seen := map[string]bool{}
	transforms := map[string]int{}
	for _, w := range writes {
		var name string
		n := len(w.GetUpdateTransforms())
		switch op := w.GetOperation().(type) {
		case *firestorepb.Write_Update:
			name = op.Update.GetName()
		case *firestorepb.Write_Delete:
			name = op.Delete
		case *firestorepb.Write_Transform:
			name = op.Transform.GetDocument()
			n += len(op.Transform.GetFieldTransforms())
		default:
			return nil, status.Errorf(codes.InvalidArgument, "write has no operation")
		}
		if err := s.checkDocName(db, name); err != nil {
			return nil, err
		}
		if unique && seen[name] {
			return nil, status.Errorf(codes.InvalidArgument, "BatchWrite cannot write document %q more than once", name)
		}
		seen[name] = true
		names = append(names, name)
		if transforms[name] += n; transforms[name] > maxFieldTransforms {
			return nil, status.Errorf(codes.InvalidArgument, "document %q: %d field transforms in one commit exceed the maximum of %d", name, transforms[name], maxFieldTransforms)
		}
	}
	return names, nil
}

// checkDocName checks that name is a valid document name inside db.
func (s *Server) checkDocName(db *database, name string) error {
	if !strings.HasPrefix(name, db.root+"/") {
		return status.Errorf(codes.InvalidArgument, "document %q is not in database %q", name, db.name)
	}
	return query.ValidateName(name)
}

// writeLockKeys lists the locks a write to name needs: the document, and
// intent on its collection and on its collection group.
func writeLockKeys(name string) []string {
	parent, coll := collectionOf(name)
	return []string{"d:" + name, "r:" + parent + "/" + coll, "g:" + coll, "g:"}
}

// lockForWrite takes the write locks for names, in a fixed order.
func (s *Server) lockForWrite(ctx context.Context, db *database, o *lockOwner, names []string) error {
	type lk struct {
		key  string
		mode lockMode
	}
	var keys []lk
	seen := map[string]bool{}
	for _, n := range names {
		for i, k := range writeLockKeys(n) {
			if seen[k] {
				continue
			}
			seen[k] = true
			mode := lockIntent
			if i == 0 {
				mode = lockExclusive
			}
			keys = append(keys, lk{k, mode})
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].key < keys[j].key })
	for _, k := range keys {
		if err := db.locks.acquire(ctx, o, k.key, k.mode); err != nil {
			return err
		}
	}
	return nil
}

// lockPlainWrite locks names for a write outside a transaction. It waits for
// older transactions holding them and wounds younger ones; wounded itself
// (by an older transaction while it waited), it tries again with the same
// age. A lock wait that times out fails the write with ABORTED.
func (s *Server) lockPlainWrite(ctx context.Context, db *database, names []string) (*lockOwner, error) {
	age := s.nextAge()
	for attempt := 0; ; attempt++ {
		o := newLockOwner(age)
		err := s.lockForWrite(ctx, db, o, names)
		if err == nil && s.claimCommit(db, o) {
			return o, nil
		}
		db.locks.release(o)
		if err != nil && (err != errLockWounded || attempt >= maxPlainWriteAttempts) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// claimCommit marks o as committing, so nothing can abort it any more. It
// reports false when o was aborted first.
func (s *Server) claimCommit(db *database, o *lockOwner) bool {
	db.locks.mu.Lock()
	defer db.locks.mu.Unlock()
	if o.aborted != abortNone || o.finished {
		return false
	}
	o.finished = true
	return true
}

// applyLocked applies writes at commitT and returns one result per write and
// the documents that changed. Nothing changes when a write fails. The caller
// holds db.mu for writing.
func (s *Server) applyLocked(db *database, writes []*firestorepb.Write, commitT int64) ([]*firestorepb.WriteResult, []docChange, error) {
	state := map[string]*firestorepb.Document{}
	// base holds each written document as it was before the commit,
	// decoded once, so a write that leaves it as it was is seen as such.
	base := map[string]*firestorepb.Document{}
	var order []string
	current := func(name string) *firestorepb.Document {
		if d, ok := state[name]; ok {
			return d
		}
		if d, ok := base[name]; ok {
			return d
		}
		d := db.getLocked(name, 0)
		base[name] = d
		return d
	}
	results := make([]*firestorepb.WriteResult, 0, len(writes))
	for _, w := range writes {
		name, next, res, err := applyWrite(current, w, commitT)
		if err != nil {
			return nil, nil, err
		}
		if _, ok := state[name]; !ok {
			order = append(order, name)
		}
		state[name] = next
		results = append(results, res)
	}
	var changes []docChange
	for _, name := range order {
		before := base[name]
		after := state[name]
		if before == nil && after == nil {
			continue
		}
		if before == after {
			continue // every write to it left it as it was
		}
		h := db.historyLocked(name)
		enc := encodeDocument(after)
		h.push(commitT, enc)
		db.indexChangeLocked(name, before, after)
		if len(h.versions) > 8 {
			h.trim(commitT - s.retention.Microseconds())
		}
		changes = append(changes, docChange{name: name, old: before, new: after, enc: enc})
	}
	return results, changes, nil
}

// applyWrite applies one write to the current state of its document and
// returns the document's name, its new state (nil = missing) and the write's
// result.
func applyWrite(current func(string) *firestorepb.Document, w *firestorepb.Write, commitT int64) (string, *firestorepb.Document, *firestorepb.WriteResult, error) {
	var name string
	switch op := w.GetOperation().(type) {
	case *firestorepb.Write_Update:
		name = op.Update.GetName()
	case *firestorepb.Write_Delete:
		name = op.Delete
	case *firestorepb.Write_Transform:
		name = op.Transform.GetDocument()
	}
	prev := current(name)
	if err := checkPrecondition(name, prev, w.GetCurrentDocument()); err != nil {
		return "", nil, nil, err
	}
	if _, ok := w.GetOperation().(*firestorepb.Write_Delete); ok {
		if len(w.GetUpdateTransforms()) > 0 {
			return "", nil, nil, status.Errorf(codes.InvalidArgument, "a delete cannot have transforms")
		}
		return name, nil, &firestorepb.WriteResult{}, nil
	}

	var fields map[string]*firestorepb.Value
	var transforms []*firestorepb.DocumentTransform_FieldTransform
	switch op := w.GetOperation().(type) {
	case *firestorepb.Write_Update:
		transforms = w.GetUpdateTransforms()
		if w.GetUpdateMask() == nil {
			fields = op.Update.GetFields()
			if len(transforms) > 0 {
				fields = cloneFields(fields)
			}
			if fields == nil {
				fields = map[string]*firestorepb.Value{}
			}
		} else {
			fields = cloneFields(prev.GetFields())
			for _, p := range w.GetUpdateMask().GetFieldPaths() {
				path, err := query.ParseFieldPath(p)
				if err != nil {
					return "", nil, nil, err
				}
				if v, ok := query.Lookup(op.Update.GetFields(), path); ok {
					query.SetPath(fields, path, proto.Clone(v).(*firestorepb.Value))
				} else {
					query.DeletePath(fields, path)
				}
			}
		}
	case *firestorepb.Write_Transform:
		if len(w.GetUpdateTransforms()) > 0 {
			return "", nil, nil, status.Errorf(codes.InvalidArgument, "a transform write cannot have update_transforms")
		}
		transforms = op.Transform.GetFieldTransforms()
		fields = cloneFields(prev.GetFields())
	}

	res := &firestorepb.WriteResult{}
	commitTS := tsMicros(commitT)
	seenPaths := map[string]bool{}
	for _, ft := range transforms {
		path, err := query.ParseFieldPath(ft.GetFieldPath())
		if err != nil {
			return "", nil, nil, err
		}
		key := strings.Join(path, "\x00")
		if seenPaths[key] {
			return "", nil, nil, status.Errorf(codes.InvalidArgument, "field %q is transformed more than once", ft.GetFieldPath())
		}
		seenPaths[key] = true
		old, _ := query.Lookup(fields, path)
		v, err := query.ApplyTransform(old, ft, commitTS)
		if err != nil {
			return "", nil, nil, err
		}
		query.SetPath(fields, path, v)
		res.TransformResults = append(res.TransformResults, transformResult(ft, v))
	}
	// Firestore keeps timestamps to the microsecond.
	query.TruncateTimestamps(fields)

	next := &firestorepb.Document{Name: name, Fields: fields}
	if prev != nil && fieldsEqual(prev.GetFields(), fields) {
		next.CreateTime = prev.GetCreateTime()
		next.UpdateTime = prev.GetUpdateTime()
		res.UpdateTime = prev.GetUpdateTime()
		return name, prev, res, nil
	}
	if err := query.ValidateDocument(next); err != nil {
		return "", nil, nil, err
	}
	if prev != nil {
		next.CreateTime = prev.GetCreateTime()
	} else {
		next.CreateTime = commitTS
	}
	next.UpdateTime = commitTS
	res.UpdateTime = commitTS
	return name, next, res, nil
}

// checkPrecondition answers a failed precondition with the code and message
// Cloud Firestore uses: NOT_FOUND "No document to update: <name>" for
// exists:true, ALREADY_EXISTS "Document already exists: <name>" for
// exists:false, and FAILED_PRECONDITION "the stored version (<stored>) does
// not match the required base version (<required>)" for an update_time that
// does not match, versions in microseconds and 0 for a missing document.
func checkPrecondition(name string, prev *firestorepb.Document, pc *firestorepb.Precondition) error {
	switch c := pc.GetConditionType().(type) {
	case *firestorepb.Precondition_Exists:
		if c.Exists && prev == nil {
			return status.Errorf(codes.NotFound, "No document to update: %s", name)
		}
		if !c.Exists && prev != nil {
			return status.Errorf(codes.AlreadyExists, "Document already exists: %s", name)
		}
	case *firestorepb.Precondition_UpdateTime:
		var stored int64
		if prev != nil {
			stored = microsOf(prev.GetUpdateTime())
		}
		if prev == nil || stored != microsOf(c.UpdateTime) || c.UpdateTime.GetNanos()%1000 != 0 {
			return status.Errorf(codes.FailedPrecondition, "the stored version (%d) does not match the required base version (%d)", stored, microsOf(c.UpdateTime))
		}
	}
	return nil
}

// cloneFields deep-copies a field map, so it can be changed in place.
func cloneFields(f map[string]*firestorepb.Value) map[string]*firestorepb.Value {
	out := make(map[string]*firestorepb.Value, len(f))
	for k, v := range f {
		out[k] = proto.Clone(v).(*firestorepb.Value)
	}
	return out
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// fieldsEqual reports whether two field maps are identical to the bit
// (a write that produces them changes nothing).
func fieldsEqual(a, b map[string]*firestorepb.Value) bool {
	if len(a) != len(b) {
		return false
	}
	ab, err1 := deterministic.Marshal(&firestorepb.MapValue{Fields: a})
	bb, err2 := deterministic.Marshal(&firestorepb.MapValue{Fields: b})
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// sortedUnique returns the distinct strings of in, sorted.
func sortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	j := 0
	for i, v := range out {
		if i == 0 || v != out[j-1] {
			out[j] = v
			j++
		}
	}
	return out[:j]
}

// transformResult is what a commit reports for one field transform: the
// new value, except for array union and array remove, whose result is null
// as the API documents.
func transformResult(ft *firestorepb.DocumentTransform_FieldTransform, v *firestorepb.Value) *firestorepb.Value {
	switch ft.GetTransformType().(type) {
	case *firestorepb.DocumentTransform_FieldTransform_AppendMissingElements, *firestorepb.DocumentTransform_FieldTransform_RemoveAllFromArray:
		return &firestorepb.Value{ValueType: &firestorepb.Value_NullValue{}}
	}
	return v
}
