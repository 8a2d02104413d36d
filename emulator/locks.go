package emulator

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lockMode is how a lock is held. Documents are always locked exclusively. A
// collection range is locked exclusively by a query in a read-write
// transaction, and in intent mode by every write into that collection, so
// writers into one collection do not block each other but cannot slip a
// phantom past a transaction that queried it.
type lockMode uint8

const (
	lockExclusive lockMode = iota + 1
	lockIntent
)

func compatible(held, want lockMode) bool {
	return held == lockIntent && want == lockIntent
}

// abortReason says why a lock owner lost its locks.
type abortReason uint8

const (
	abortNone abortReason = iota
	abortDeadlock
	abortExpired
	abortRolledBack
	abortReset
	abortRetried
)

// String describes the reason for the client.
func (r abortReason) String() string {
	switch r {
	case abortDeadlock:
		return "the transaction was aborted to resolve a lock conflict with an older transaction"
	case abortExpired:
		return "the transaction has expired (idle for too long or open for too long)"
	case abortRolledBack:
		return "the transaction was rolled back"
	case abortReset:
		return "the database was reset"
	case abortRetried:
		return "the transaction was replaced by a retry"
	}
	return "the transaction is no longer active"
}

// lockOwner is a transaction (or a single non-transactional write) as seen by
// the lock table. All fields are guarded by lockTable.mu.
type lockOwner struct {
	age      uint64 // smaller is older
	held     map[string]lockMode
	waiting  *lockRequest
	aborted  abortReason
	finished bool          // committed or released; no more locks
	wake     chan struct{} // capacity 1
}

func newLockOwner(age uint64) *lockOwner {
	return &lockOwner{age: age, held: map[string]lockMode{}, wake: make(chan struct{}, 1)}
}

type lockRequest struct {
	owner   *lockOwner
	key     string
	mode    lockMode
	granted bool
}

type lockEntry struct {
	holders map[*lockOwner]lockMode
	queue   []*lockRequest
}

// lockTable grants document and collection-range locks in FIFO order. A
// request that would close a cycle of waiters aborts the youngest member of
// the cycle at once (wound-wait restricted to real deadlocks): contention
// without a deadlock only waits, so a hot document serialises its
// transactions without aborts.
type lockTable struct {
	mu      sync.Mutex
	entries map[string]*lockEntry
	// onAbort is called (with mu held) for each owner chosen as the victim
	// of a deadlock.
	onAbort func(o *lockOwner)
}

func newLockTable() *lockTable {
	return &lockTable{entries: map[string]*lockEntry{}}
}

var errLockDeadlock = status.Error(codes.Aborted, "transaction aborted: lock conflict with an older transaction (deadlock); retry the transaction")

// acquire takes key in mode for o, waiting for conflicting holders. It
// returns an ABORTED status error when o is (or becomes) aborted, or the
// context's error.
func (lt *lockTable) acquire(ctx context.Context, o *lockOwner, key string, mode lockMode) error {
	lt.mu.Lock()
	if o.aborted != abortNone {
		r := o.aborted
		lt.mu.Unlock()
		return abortedError(r)
	}
	e := lt.entries[key]
	if e == nil {
		e = &lockEntry{holders: map[*lockOwner]lockMode{}}
		lt.entries[key] = e
	}
	if m, ok := e.holders[o]; ok && (m == lockExclusive || m == mode) {
		lt.mu.Unlock()
		return nil
	}
	if len(e.queue) == 0 && lt.grantable(e, o, mode) {
		lt.grant(e, o, key, mode)
		lt.mu.Unlock()
		return nil
	}
	req := &lockRequest{owner: o, key: key, mode: mode}
	e.queue = append(e.queue, req)
	o.waiting = req
	if victim := lt.deadlockVictim(o); victim != nil {
		if lt.onAbort != nil {
			lt.onAbort(victim)
		}
		if victim == o {
			lt.dequeue(req)
			lt.mu.Unlock()
			return errLockDeadlock
		}
		lt.abortLocked(victim, abortDeadlock)
	}
	lt.mu.Unlock()

	for {
		var ctxErr error
		select {
		case <-o.wake:
		case <-ctx.Done():
			ctxErr = ctx.Err()
		}
		lt.mu.Lock()
		if req.granted {
			lt.mu.Unlock()
			return nil
		}
		if o.aborted != abortNone {
			r := o.aborted
			lt.dequeue(req)
			lt.mu.Unlock()
			return abortedError(r)
		}
		if ctxErr != nil {
			lt.dequeue(req)
			lt.mu.Unlock()
			return status.FromContextError(ctxErr).Err()
		}
		lt.mu.Unlock()
	}
}

// errTxnInvalid is Cloud Firestore's answer to a request naming a transaction
// that expired, was rolled back, was replaced by a retry, already committed or
// never existed. It is INVALID_ARGUMENT, not ABORTED: the client must not
// retry the same transaction id.
var errTxnInvalid = status.Error(codes.InvalidArgument, "The referenced transaction has expired or is no longer valid.")

// abortedError is the status a request of an aborted owner gets: ABORTED for
// a deadlock victim or a reset database (the client retries the whole
// transaction), INVALID_ARGUMENT for a transaction that is no longer valid.
func abortedError(r abortReason) error {
	switch r {
	case abortDeadlock:
		return errLockDeadlock
	case abortReset:
		return status.Errorf(codes.Aborted, "transaction aborted: %s", r)
	}
	return errTxnInvalid
}

func (lt *lockTable) grantable(e *lockEntry, o *lockOwner, mode lockMode) bool {
	for h, m := range e.holders {
		if h != o && !compatible(m, mode) {
			return false
		}
	}
	return true
}

func (lt *lockTable) grant(e *lockEntry, o *lockOwner, key string, mode lockMode) {
	if cur, ok := e.holders[o]; ok && cur == lockExclusive {
		mode = lockExclusive
	}
	e.holders[o] = mode
	o.held[key] = mode
}

// dequeue removes a pending request and lets the requests behind it move.
func (lt *lockTable) dequeue(req *lockRequest) {
	if req.owner.waiting == req {
		req.owner.waiting = nil
	}
	e := lt.entries[req.key]
	if e == nil {
		return
	}
	for i, r := range e.queue {
		if r == req {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			break
		}
	}
	lt.promote(req.key, e)
}

// promote grants queued requests in order while they are compatible.
func (lt *lockTable) promote(key string, e *lockEntry) {
	for len(e.queue) > 0 {
		r := e.queue[0]
		if !lt.grantable(e, r.owner, r.mode) {
			break
		}
		e.queue = e.queue[1:]
		lt.grant(e, r.owner, key, r.mode)
		r.granted = true
		if r.owner.waiting == r {
			r.owner.waiting = nil
		}
		select {
		case r.owner.wake <- struct{}{}:
		default:
		}
	}
	if len(e.holders) == 0 && len(e.queue) == 0 {
		delete(lt.entries, key)
	}
}

// releaseLocked drops every lock o holds. The caller holds lt.mu.
func (lt *lockTable) releaseLocked(o *lockOwner) {
	for key := range o.held {
		e := lt.entries[key]
		if e == nil {
			continue
		}
		delete(e.holders, o)
		lt.promote(key, e)
	}
	o.held = map[string]lockMode{}
}

// release drops every lock o holds and marks it finished.
func (lt *lockTable) release(o *lockOwner) {
	lt.mu.Lock()
	o.finished = true
	lt.releaseLocked(o)
	lt.mu.Unlock()
}

// abortLocked marks o aborted, drops its locks and wakes it if it waits. The
// caller holds lt.mu.
func (lt *lockTable) abortLocked(o *lockOwner, r abortReason) {
	if o.aborted != abortNone || o.finished {
		return
	}
	o.aborted = r
	if o.waiting != nil {
		lt.dequeue(o.waiting)
	}
	lt.releaseLocked(o)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// abort marks o aborted for reason r unless it already finished; it reports
// whether o was aborted by this call.
func (lt *lockTable) abort(o *lockOwner, r abortReason) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if o.aborted != abortNone || o.finished {
		return false
	}
	lt.abortLocked(o, r)
	return true
}

// blockers lists the owners o waits for: conflicting holders of the key and
// conflicting requests queued ahead of it.
func (lt *lockTable) blockers(o *lockOwner) []*lockOwner {
	req := o.waiting
	if req == nil {
		return nil
	}
	e := lt.entries[req.key]
	if e == nil {
		return nil
	}
	var out []*lockOwner
	for h, m := range e.holders {
		if h != o && !compatible(m, req.mode) {
			out = append(out, h)
		}
	}
	for _, r := range e.queue {
		if r == req {
			break
		}
		if r.owner != o && !compatible(r.mode, req.mode) {
			out = append(out, r.owner)
		}
	}
	return out
}

// deadlockVictim looks for a cycle of waiters through o (the only kind a new
// wait can create) and returns its youngest member, or nil.
func (lt *lockTable) deadlockVictim(o *lockOwner) *lockOwner {
	visited := map[*lockOwner]bool{}
	var path []*lockOwner
	var dfs func(n *lockOwner) bool
	dfs = func(n *lockOwner) bool {
		for _, b := range lt.blockers(n) {
			if b == o {
				return true
			}
			if visited[b] {
				continue
			}
			visited[b] = true
			path = append(path, b)
			if dfs(b) {
				return true
			}
			path = path[:len(path)-1]
		}
		return false
	}
	if !dfs(o) {
		return nil
	}
	victim := o
	for _, n := range path {
		if n.age > victim.age {
			victim = n
		}
	}
	return victim
}
