package emulator

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultLockWaitTimeout bounds how long a request waits for a lock before
// its transaction is aborted. Cloud Firestore documents that lock waits time
// out but not after how long; 20 s stays well inside its 60 s idle and 270 s
// lifetime limits.
const defaultLockWaitTimeout = 20 * time.Second

// lockMode is a set of lock modes held or requested on one key, as Cloud
// Firestore's server libraries see them in pessimistic concurrency mode.
type lockMode uint8

const (
	// lockShared is what a read in a read-write transaction takes: on each
	// document it reads, and on the collection range (or collection group) a
	// query or listing reads. Readers do not block each other.
	lockShared lockMode = 1 << iota
	// lockIntent is what a write takes on the collection range and the
	// collection groups of the document it writes: writers into one
	// collection do not block each other, but they conflict with a shared
	// range lock, so no phantom slips past a transaction that queried the
	// collection.
	lockIntent
	// lockExclusive is what a write (at commit) takes on each document it
	// writes; it conflicts with every other lock on the document.
	lockExclusive
)

// compatible reports whether two owners may hold modes a and b on one key at
// once: shared with shared, intent with intent, nothing with exclusive.
func compatible(a, b lockMode) bool {
	if (a|b)&lockExclusive != 0 {
		return false
	}
	return !(a&lockShared != 0 && b&lockIntent != 0 || a&lockIntent != 0 && b&lockShared != 0)
}

// covers reports whether holding held already grants want.
func covers(held, want lockMode) bool {
	return held&lockExclusive != 0 || held&want == want
}

// abortReason says why a lock owner lost its locks.
type abortReason uint8

const (
	abortNone abortReason = iota
	abortWounded
	abortLockTimeout
	abortExpired
	abortRolledBack
	abortReset
	abortRetried
)

// String describes the reason for the client.
func (r abortReason) String() string {
	switch r {
	case abortWounded:
		return "the transaction was aborted by an older transaction that needed a lock it held"
	case abortLockTimeout:
		return "the transaction waited too long for a lock"
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

// ownerSeq breaks ties between owners of equal age, so "older" is a total
// order and wound-wait can never leave two owners waiting for each other.
var ownerSeq atomic.Uint64

// lockOwner is a transaction (or a single non-transactional write) as seen by
// the lock table. All fields but age and seq are guarded by lockTable.mu.
type lockOwner struct {
	age      uint64 // smaller is older; a retried transaction keeps its age
	seq      uint64
	held     map[string]lockMode
	waiting  *lockRequest
	aborted  abortReason
	finished bool          // committing, committed or released; cannot be wounded
	wake     chan struct{} // capacity 1
}

func newLockOwner(age uint64) *lockOwner {
	return &lockOwner{age: age, seq: ownerSeq.Add(1), held: map[string]lockMode{}, wake: make(chan struct{}, 1)}
}

// olderThan reports whether o has priority over p under wound-wait.
func (o *lockOwner) olderThan(p *lockOwner) bool {
	if o.age != p.age {
		return o.age < p.age
	}
	return o.seq < p.seq
}

type lockRequest struct {
	owner   *lockOwner
	key     string
	mode    lockMode
	granted bool
}

type lockEntry struct {
	holders map[*lockOwner]lockMode
	queue   []*lockRequest // oldest owner first
}

// lockTable grants document and collection-range locks with Cloud
// Firestore's wound-wait rule: a request that conflicts with a lock held by a
// younger transaction aborts ("wounds") that transaction and takes the lock;
// a request that conflicts with an older holder waits. Waiting requests are
// granted oldest first. Every wait is for an older owner (or one already
// committing), so no deadlock can form; a wait longer than waitTimeout aborts
// the waiting transaction.
type lockTable struct {
	mu      sync.Mutex
	entries map[string]*lockEntry
	// onAbort is called (with mu held) for each owner wounded or timed out.
	onAbort func(o *lockOwner)
	// waitTimeout bounds one wait for a lock; 0 means defaultLockWaitTimeout.
	waitTimeout time.Duration
}

func newLockTable() *lockTable {
	return &lockTable{entries: map[string]*lockEntry{}}
}

// errLockWounded is Cloud Firestore's answer to a transaction aborted so an
// older one could take a lock it held. The client retries the transaction.
var errLockWounded = status.Error(codes.Aborted, "Aborted due to cross-transaction contention. This occurs when multiple transactions attempt to access the same data, requiring Firestore to abort at least one in order to enforce serializability.")

// errLockTimeout is the answer to a transaction that waited too long for a
// lock. The client retries the transaction.
var errLockTimeout = status.Error(codes.Aborted, "Transaction lock timeout.")

// acquire takes key in mode for o. Younger owners holding conflicting locks
// are wounded; o waits for older ones. It returns an ABORTED status error
// when o is (or becomes) aborted or its wait times out, or the context's
// error.
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
	if covers(e.holders[o], mode) {
		lt.mu.Unlock()
		return nil
	}
	req := &lockRequest{owner: o, key: key, mode: mode}
	i := sort.Search(len(e.queue), func(i int) bool { return o.olderThan(e.queue[i].owner) })
	e.queue = append(e.queue, nil)
	copy(e.queue[i+1:], e.queue[i:])
	e.queue[i] = req
	o.waiting = req
	lt.woundLocked(e, o, mode)
	lt.promote(key, e)
	if req.granted {
		lt.mu.Unlock()
		return nil
	}
	lt.mu.Unlock()

	wait := lt.waitTimeout
	if wait <= 0 {
		wait = defaultLockWaitTimeout
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		var ctxErr error
		timedOut := false
		select {
		case <-o.wake:
		case <-ctx.Done():
			ctxErr = ctx.Err()
		case <-timer.C:
			timedOut = true
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
		if timedOut {
			lt.abortLocked(o, abortLockTimeout)
			if lt.onAbort != nil {
				lt.onAbort(o)
			}
			lt.mu.Unlock()
			return errLockTimeout
		}
		lt.mu.Unlock()
	}
}

// woundLocked aborts every owner younger than o that holds a lock on e
// conflicting with mode and is not yet committing. The caller holds lt.mu.
func (lt *lockTable) woundLocked(e *lockEntry, o *lockOwner, mode lockMode) {
	var victims []*lockOwner
	for h, m := range e.holders {
		if h != o && !h.finished && !compatible(m, mode) && o.olderThan(h) {
			victims = append(victims, h)
		}
	}
	for _, v := range victims {
		if v.aborted != abortNone || v.finished {
			continue
		}
		lt.abortLocked(v, abortWounded)
		if lt.onAbort != nil {
			lt.onAbort(v)
		}
	}
}

// errTxnInvalid is Cloud Firestore's answer to a request naming a transaction
// that expired, was rolled back, was replaced by a retry, already committed or
// never existed. It is INVALID_ARGUMENT, not ABORTED: the client must not
// retry the same transaction id.
var errTxnInvalid = status.Error(codes.InvalidArgument, "The referenced transaction has expired or is no longer valid.")

// abortedError is the status a request of an aborted owner gets: ABORTED for
// a wounded transaction, a lock wait that timed out or a reset database (the
// client retries the whole transaction), INVALID_ARGUMENT for a transaction
// that is no longer valid.
func abortedError(r abortReason) error {
	switch r {
	case abortWounded:
		return errLockWounded
	case abortLockTimeout:
		return errLockTimeout
	case abortReset:
		return status.Errorf(codes.Aborted, "transaction aborted: %s", r)
	}
	return errTxnInvalid
}

// grantable reports whether o may take mode beside the other holders of e.
func (lt *lockTable) grantable(e *lockEntry, o *lockOwner, mode lockMode) bool {
	for h, m := range e.holders {
		if h != o && !compatible(m, mode) {
			return false
		}
	}
	return true
}

func (lt *lockTable) grant(e *lockEntry, o *lockOwner, key string, mode lockMode) {
	m := e.holders[o] | mode
	e.holders[o] = m
	o.held[key] = m
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

// promote grants queued requests, oldest first, while they are compatible
// with the holders; a request that must wait holds back the younger ones
// behind it, so a waiting writer is not starved by a stream of readers.
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
