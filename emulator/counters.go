package emulator

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Counters counts what the emulator served, so tests and benchmarks can
// check round trips and billing-relevant work.
type Counters struct {
	// RPCs counts calls by gRPC method name ("Commit", "BatchGetDocuments",
	// "BeginTransaction", ...), including calls that failed.
	RPCs map[string]int64 `json:"rpcs"`
	// DocumentReads counts documents returned by reads, as Firestore bills
	// them: one per found or missing document in a get, one per query result
	// (and one for a query with no results), one per document sent to a
	// listener.
	DocumentReads int64 `json:"documentReads"`
	// DocumentWrites counts writes applied by committed Commit and
	// BatchWrite calls.
	DocumentWrites int64 `json:"documentWrites"`
	// Aborts counts transactions aborted: wounded by an older transaction
	// (wound-wait), lock waits timed out, idle expiry, resets and injected
	// ABORTED faults.
	Aborts int64 `json:"aborts"`
}

func (c *Counters) add(o *Counters) {
	for k, v := range o.RPCs {
		c.RPCs[k] += v
	}
	c.DocumentReads += o.DocumentReads
	c.DocumentWrites += o.DocumentWrites
	c.Aborts += o.Aborts
}

// counterSet holds the counters of every project.
type counterSet struct {
	mu     sync.Mutex
	byProj map[string]*Counters
}

func (cs *counterSet) proj(p string) *Counters {
	c := cs.byProj[p]
	if c == nil {
		c = &Counters{RPCs: map[string]int64{}}
		cs.byProj[p] = c
	}
	return c
}

func (cs *counterSet) addRPC(project, method string) {
	cs.mu.Lock()
	cs.proj(project).RPCs[method]++
	cs.mu.Unlock()
}

func (cs *counterSet) addReads(project string, n int64) {
	cs.mu.Lock()
	cs.proj(project).DocumentReads += n
	cs.mu.Unlock()
}

func (cs *counterSet) addWrites(project string, n int64) {
	cs.mu.Lock()
	cs.proj(project).DocumentWrites += n
	cs.mu.Unlock()
}

func (cs *counterSet) addAbort(project string) {
	cs.mu.Lock()
	cs.proj(project).Aborts++
	cs.mu.Unlock()
}

func (cs *counterSet) snapshot(project string) Counters {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := Counters{RPCs: map[string]int64{}}
	for p, c := range cs.byProj {
		if project == "" || p == project {
			out.add(c)
		}
	}
	return out
}

func (cs *counterSet) reset() {
	cs.mu.Lock()
	cs.byProj = map[string]*Counters{}
	cs.mu.Unlock()
}

// Counters returns the counters of project, or of all projects when project
// is "". For a given sequence of calls the counts are the same on every run.
func (s *Server) Counters(project string) Counters {
	return s.counters.snapshot(project)
}

// ResetCounters sets every counter of every project to zero.
func (s *Server) ResetCounters() { s.counters.reset() }

// Fault makes calls fail or slow down, to test how callers cope with errors,
// latency and lost responses.
type Fault struct {
	// Project limits the fault to one project; "" matches any project.
	Project string `json:"project,omitempty"`
	// Method is the gRPC method name, e.g. "Commit".
	Method string `json:"method"`
	// Code is the status the call fails with (ignored when DropResponse).
	// An ABORTED fault on a transactional call counts as an abort.
	Code codes.Code `json:"code,omitempty"`
	// Count is how many calls the fault affects (0 = 1).
	Count int `json:"count,omitempty"`
	// Latency is added before the call is handled.
	Latency time.Duration `json:"latency,omitempty"`
	// DropResponse performs the call (a Commit commits) and then answers
	// UNAVAILABLE as if the response had been lost.
	DropResponse bool `json:"dropResponse,omitempty"`
}

// UnmarshalJSON accepts latency as a Go duration string ("250ms") or as
// nanoseconds, and code as a name ("ABORTED") or a number.
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var w struct {
		plain
		Latency json.RawMessage `json:"latency,omitempty"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Fault(w.plain)
	f.Latency = 0
	if len(w.Latency) > 0 && string(w.Latency) != "null" {
		var str string
		if err := json.Unmarshal(w.Latency, &str); err == nil {
			d, err := time.ParseDuration(str)
			if err != nil {
				return err
			}
			f.Latency = d
		} else {
			var n int64
			if err := json.Unmarshal(w.Latency, &n); err != nil {
				return err
			}
			f.Latency = time.Duration(n)
		}
	}
	return nil
}

// faultSet holds the injected faults with their remaining counts.
type faultSet struct {
	mu     sync.Mutex
	faults []*activeFault
}

type activeFault struct {
	Fault
	left int
}

// take returns the first fault matching the call and uses one of its calls.
func (fs *faultSet) take(project, method string) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, f := range fs.faults {
		if f.Method != method || (f.Project != "" && f.Project != project) {
			continue
		}
		f.left--
		if f.left <= 0 {
			fs.faults = append(fs.faults[:i], fs.faults[i+1:]...)
		}
		return f.Fault, true
	}
	return Fault{}, false
}

// InjectFault adds a fault; faults match in the order they were added.
func (s *Server) InjectFault(f Fault) {
	n := f.Count
	if n <= 0 {
		n = 1
	}
	s.faults.mu.Lock()
	s.faults.faults = append(s.faults.faults, &activeFault{Fault: f, left: n})
	s.faults.mu.Unlock()
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.faults = nil
	s.faults.mu.Unlock()
}

// methodName turns "/google.firestore.v1.Firestore/Commit" into "Commit".
func methodName(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// projectOf finds the project a request is about.
func projectOf(req any) string {
	var res string
	switch r := req.(type) {
	case interface{ GetDatabase() string }:
		res = r.GetDatabase()
	case interface{ GetParent() string }:
		res = r.GetParent()
	case interface{ GetName() string }:
		res = r.GetName()
	case *firestorepb.UpdateDocumentRequest:
		res = r.GetDocument().GetName()
	}
	if res == "" {
		if r, ok := req.(interface{ GetParent() string }); ok {
			res = r.GetParent()
		}
	}
	if res == "" {
		if r, ok := req.(interface{ GetName() string }); ok {
			res = r.GetName()
		}
	}
	parts := strings.SplitN(res, "/", 3)
	if len(parts) >= 2 && parts[0] == "projects" {
		return parts[1]
	}
	return ""
}

var errDropped = status.Error(codes.Unavailable, "connection lost before the response arrived (injected fault)")

// beforeCall counts the call and applies an injected fault. It returns the
// fault when the response must be dropped, or an error to fail with.
func (s *Server) beforeCall(ctx context.Context, project, method string) (drop bool, err error) {
	s.counters.addRPC(project, method)
	f, ok := s.faults.take(project, method)
	if !ok {
		return false, nil
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, status.FromContextError(ctx.Err()).Err()
		}
	}
	if f.DropResponse {
		return true, nil
	}
	if f.Code != codes.OK {
		if f.Code == codes.Aborted {
			s.counters.addAbort(project)
		}
		return false, status.Errorf(f.Code, "injected fault on %s", method)
	}
	return false, nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := methodName(info.FullMethod)
	drop, err := s.beforeCall(ctx, projectOf(req), method)
	if err != nil {
		return nil, err
	}
	if err := checkRequestSize(req); err != nil {
		return nil, err
	}
	resp, err := handler(ctx, req)
	if drop && err == nil {
		return nil, errDropped
	}
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := &faultStream{ServerStream: ss, s: s, method: methodName(info.FullMethod)}
	err := handler(srv, w)
	if w.drop.Load() && err == nil {
		return errDropped
	}
	return err
}

// faultStream counts a streaming call and applies faults when its first
// request arrives (the project is known only then). drop is atomic: a
// handler (Listen) may return while its receiving goroutine is still in
// the first RecvMsg.
type faultStream struct {
	grpc.ServerStream
	s      *Server
	method string
	seen   bool
	drop   atomic.Bool
}

// RecvMsg applies the call's fault when the first request arrives and
// rejects oversized requests.
func (w *faultStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !w.seen {
		w.seen = true
		drop, err := w.s.beforeCall(w.Context(), projectOf(m), w.method)
		if err != nil {
			return err
		}
		w.drop.Store(drop)
	}
	return checkRequestSize(m)
}

// SendMsg drops responses of a call whose response is to be lost.
func (w *faultStream) SendMsg(m any) error {
	if w.drop.Load() {
		return nil
	}
	return w.ServerStream.SendMsg(m)
}

// maxRequestBytes is Cloud Firestore's maximum API request size (10 MiB).
const maxRequestBytes = 10 << 20

// checkRequestSize answers INVALID_ARGUMENT for a request larger than
// maxRequestBytes, as Firestore does. (RESOURCE_EXHAUSTED would make the
// client retry a Commit that can never succeed.)
func checkRequestSize(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	if n := proto.Size(m); n > maxRequestBytes {
		return status.Errorf(codes.InvalidArgument, "request size %d bytes exceeds the maximum API request size of %d bytes (10 MiB)", n, maxRequestBytes)
	}
	return nil
}
