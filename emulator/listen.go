package emulator

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/savesync/savesync/emulator/internal/query"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// watcher receives the commits of one database for one Listen stream.
type watcher struct {
	mu      sync.Mutex
	batches []changeBatch
	signal  chan struct{} // capacity 1
}

// changeBatch is the documents one commit changed.
type changeBatch struct {
	t       int64
	changes []docChange
}

// notifyLocked queues a commit for every listener of db. The caller holds
// db.mu for writing, so listeners see commits in commit order.
func (db *database) notifyLocked(changes []docChange, t int64) {
	db.watchMu.Lock()
	defer db.watchMu.Unlock()
	for w := range db.watchers {
		w.mu.Lock()
		w.batches = append(w.batches, changeBatch{t: t, changes: changes})
		w.mu.Unlock()
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

func (db *database) addWatcher() *watcher {
	w := &watcher{signal: make(chan struct{}, 1)}
	db.watchMu.Lock()
	db.watchers[w] = struct{}{}
	db.watchMu.Unlock()
	return w
}

func (db *database) removeWatcher(w *watcher) {
	db.watchMu.Lock()
	delete(db.watchers, w)
	db.watchMu.Unlock()
}

func (w *watcher) take() []changeBatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.batches
	w.batches = nil
	return b
}

// listenTarget is one target of a Listen stream and what the client was
// last told about it.
type listenTarget struct {
	id     int32
	docs   map[string]bool // documents target
	parent string          // query target
	query  *firestorepb.StructuredQuery
	since  int64                            // state sent as of this time
	sent   map[string]*firestorepb.Document // documents the client holds
}

// Listen streams the state of document and query targets, then every change.
func (s *Server) Listen(stream firestorepb.Firestore_ListenServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	reqs := make(chan *firestorepb.ListenRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	var db *database
	var w *watcher
	defer func() {
		if w != nil {
			db.removeWatcher(w)
		}
	}()
	targets := map[int32]*listenTarget{}
	var nextID int32 = 1 << 20
	var signal chan struct{}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case req := <-reqs:
			if db == nil {
				d, err := s.database(req.GetDatabase())
				if err != nil {
					return err
				}
				db = d
				w = db.addWatcher()
				signal = w.signal
			} else if req.GetDatabase() != "" && req.GetDatabase() != db.name {
				return status.Errorf(codes.InvalidArgument, "a Listen stream serves one database")
			}
			switch tc := req.GetTargetChange().(type) {
			case *firestorepb.ListenRequest_AddTarget:
				t, err := newListenTarget(db, tc.AddTarget)
				if err != nil {
					return err
				}
				if t.id == 0 {
					nextID++
					t.id = nextID
				}
				if _, dup := targets[t.id]; dup {
					return status.Errorf(codes.InvalidArgument, "target id %d is already in use", t.id)
				}
				if err := s.checkTargetIndexes(db, t); err != nil {
					// Firestore removes a target whose query lacks its
					// index, the error as the cause; the stream goes on.
					if err := stream.Send(&firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_TargetChange{TargetChange: &firestorepb.TargetChange{
						TargetChangeType: firestorepb.TargetChange_REMOVE, TargetIds: []int32{t.id}, Cause: status.Convert(err).Proto(),
					}}}); err != nil {
						return err
					}
					continue
				}
				resume := len(tc.AddTarget.GetResumeToken()) > 0 || tc.AddTarget.GetReadTime() != nil
				targets[t.id] = t
				if err := s.sendInitial(stream, db, t, resume); err != nil {
					return err
				}
			case *firestorepb.ListenRequest_RemoveTarget:
				id := tc.RemoveTarget
				if _, ok := targets[id]; !ok {
					return status.Errorf(codes.InvalidArgument, "no target %d to remove", id)
				}
				delete(targets, id)
				if err := stream.Send(&firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_TargetChange{TargetChange: &firestorepb.TargetChange{
					TargetChangeType: firestorepb.TargetChange_REMOVE, TargetIds: []int32{id},
				}}}); err != nil {
					return err
				}
			default:
				return status.Errorf(codes.InvalidArgument, "ListenRequest needs add_target or remove_target")
			}
		case <-signal:
			for _, b := range w.take() {
				if err := s.sendChanges(stream, db, targets, b); err != nil {
					return err
				}
			}
		}
	}
}

func newListenTarget(db *database, t *firestorepb.Target) (*listenTarget, error) {
	lt := &listenTarget{id: t.GetTargetId(), sent: map[string]*firestorepb.Document{}}
	switch tt := t.GetTargetType().(type) {
	case *firestorepb.Target_Documents:
		lt.docs = map[string]bool{}
		for _, n := range tt.Documents.GetDocuments() {
			if !strings.HasPrefix(n, db.root+"/") {
				return nil, status.Errorf(codes.InvalidArgument, "document %q is not in database %q", n, db.name)
			}
			if err := query.ValidateName(n); err != nil {
				return nil, err
			}
			lt.docs[n] = true
		}
	case *firestorepb.Target_Query:
		q := tt.Query.GetStructuredQuery()
		if q == nil {
			return nil, status.Errorf(codes.InvalidArgument, "query target needs a structured_query")
		}
		p := tt.Query.GetParent()
		if p != db.root && (!strings.HasPrefix(p, db.root+"/") || query.ValidateName(p) != nil) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid query parent %q", p)
		}
		if _, err := query.Run(p, q, nil); err != nil {
			return nil, err
		}
		lt.parent, lt.query = p, q
	default:
		return nil, status.Errorf(codes.InvalidArgument, "target needs documents or a query")
	}
	return lt, nil
}

// evaluate returns the documents of t at time at. The caller holds db.mu.
func (t *listenTarget) evaluateLocked(db *database, at int64) (map[string]*firestorepb.Document, error) {
	out := map[string]*firestorepb.Document{}
	if t.docs != nil {
		for n := range t.docs {
			if d := db.getLocked(n, at); d != nil {
				out[n] = d
			}
		}
		return out, nil
	}
	docs, err := query.Run(t.parent, t.query, candidatesLocked(db, t.parent, t.query, at))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		out[d.GetName()] = d
	}
	return out, nil
}

// resumeToken encodes the time a target's state was sent at.
func resumeToken(t int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t))
}

// sendInitial answers a new target: ADD (RESET on resume), its documents,
// CURRENT and a global NO_CHANGE carrying the read time.
func (s *Server) sendInitial(stream firestorepb.Firestore_ListenServer, db *database, t *listenTarget, resume bool) error {
	db.mu.RLock()
	readT := s.clock.readTime()
	docs, err := t.evaluateLocked(db, 0)
	db.mu.RUnlock()
	if err != nil {
		return err
	}
	t.since = readT
	send := func(tc firestorepb.TargetChange_TargetChangeType, ids []int32, token []byte, rt int64) error {
		ch := &firestorepb.TargetChange{TargetChangeType: tc, TargetIds: ids, ResumeToken: token}
		if rt != 0 {
			ch.ReadTime = tsMicros(rt)
		}
		return stream.Send(&firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_TargetChange{TargetChange: ch}})
	}
	if err := send(firestorepb.TargetChange_ADD, []int32{t.id}, nil, 0); err != nil {
		return err
	}
	if resume {
		if err := send(firestorepb.TargetChange_RESET, []int32{t.id}, nil, 0); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		if err := sendDocChange(stream, docs[name], t.id); err != nil {
			return err
		}
	}
	t.sent = docs
	s.counters.addReads(db.project, int64(len(docs)))
	if err := send(firestorepb.TargetChange_CURRENT, []int32{t.id}, resumeToken(readT), readT); err != nil {
		return err
	}
	return send(firestorepb.TargetChange_NO_CHANGE, nil, resumeToken(readT), readT)
}

func sendDocChange(stream firestorepb.Firestore_ListenServer, d *firestorepb.Document, id int32) error {
	return stream.Send(&firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_DocumentChange{DocumentChange: &firestorepb.DocumentChange{
		Document: d, TargetIds: []int32{id},
	}}})
}

// sendChanges tells the client how one commit changed its targets, then
// sends a global NO_CHANGE so it emits a snapshot.
func (s *Server) sendChanges(stream firestorepb.Firestore_ListenServer, db *database, targets map[int32]*listenTarget, b changeBatch) error {
	sentAny := false
	for _, id := range sortedTargetIDs(targets) {
		t := targets[id]
		if b.t <= t.since || !t.affectedBy(b.changes) {
			continue
		}
		db.mu.RLock()
		docs, err := t.evaluateLocked(db, b.t)
		db.mu.RUnlock()
		if err != nil {
			return err
		}
		deleted := map[string]bool{}
		for _, c := range b.changes {
			if c.new == nil {
				deleted[c.name] = true
			}
		}
		for _, name := range slices.Sorted(maps.Keys(t.sent)) {
			if _, still := docs[name]; still {
				continue
			}
			var resp *firestorepb.ListenResponse
			if deleted[name] {
				resp = &firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_DocumentDelete{DocumentDelete: &firestorepb.DocumentDelete{
					Document: name, RemovedTargetIds: []int32{id}, ReadTime: tsMicros(b.t),
				}}}
			} else {
				resp = &firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_DocumentRemove{DocumentRemove: &firestorepb.DocumentRemove{
					Document: name, RemovedTargetIds: []int32{id}, ReadTime: tsMicros(b.t),
				}}}
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			sentAny = true
		}
		n := 0
		for _, name := range slices.Sorted(maps.Keys(docs)) {
			if old := t.sent[name]; old != nil && microsOf(old.GetUpdateTime()) == microsOf(docs[name].GetUpdateTime()) {
				continue
			}
			if err := sendDocChange(stream, docs[name], id); err != nil {
				return err
			}
			n++
			sentAny = true
		}
		s.counters.addReads(db.project, int64(n))
		t.sent = docs
		t.since = b.t
	}
	if !sentAny {
		return nil
	}
	return stream.Send(&firestorepb.ListenResponse{ResponseType: &firestorepb.ListenResponse_TargetChange{TargetChange: &firestorepb.TargetChange{
		TargetChangeType: firestorepb.TargetChange_NO_CHANGE, ResumeToken: resumeToken(b.t), ReadTime: tsMicros(b.t),
	}}})
}

// affectedBy reports whether a commit may change the target's documents.
func (t *listenTarget) affectedBy(changes []docChange) bool {
	for _, c := range changes {
		if t.docs != nil {
			if t.docs[c.name] {
				return true
			}
			continue
		}
		if strings.HasPrefix(c.name, t.parent+"/") {
			return true
		}
	}
	return false
}

func sortedTargetIDs(m map[int32]*listenTarget) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
