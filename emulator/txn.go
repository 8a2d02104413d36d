package emulator

import (
	"context"
	"crypto/rand"
	"sync"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultTransactionIdleTimeout is Firestore's idle limit for transactions.
const defaultTransactionIdleTimeout = 60 * time.Second

// defaultTransactionMaxLifetime is Firestore's limit on a transaction's
// total duration.
const defaultTransactionMaxLifetime = 270 * time.Second

// txnIDLen is the length of the transaction ids handed out.
const txnIDLen = 16

// txn is one Firestore transaction.
type txn struct {
	id       string
	db       *database
	readOnly bool
	readTime int64 // snapshot of a read-only transaction
	owner    *lockOwner

	// opMu serialises the requests of one transaction, so it waits for at
	// most one lock at a time.
	opMu sync.Mutex

	// guarded by Server.txMu
	started  time.Time
	lastUsed time.Time
	busy     int
	ended    time.Time // when it committed, rolled back or aborted; zero while open
}

// transactions is the server's table of transactions.
type transactions struct {
	mu     sync.Mutex
	byID   map[string]*txn
	nextID uint64
}

// nextAge returns the age of a new transaction or non-transactional write.
func (s *Server) nextAge() uint64 {
	s.txs.mu.Lock()
	defer s.txs.mu.Unlock()
	s.txs.nextID++
	return s.txs.nextID
}

// beginTxn starts a transaction on db with the given options.
func (s *Server) beginTxn(db *database, opts *firestorepb.TransactionOptions) (*txn, error) {
	t := &txn{db: db}
	idb := make([]byte, txnIDLen)
	if _, err := rand.Read(idb); err != nil {
		return nil, status.Errorf(codes.Internal, "transaction id: %v", err)
	}
	t.id = string(idb)
	switch m := opts.GetMode().(type) {
	case *firestorepb.TransactionOptions_ReadOnly_:
		t.readOnly = true
		if rt := m.ReadOnly.GetReadTime(); rt != nil {
			at, err := s.checkReadTime(rt)
			if err != nil {
				return nil, err
			}
			t.readTime = at
		} else {
			db.mu.RLock()
			t.readTime = s.clock.readTime()
			db.mu.RUnlock()
		}
	}
	var age uint64
	if prev := opts.GetReadWrite().GetRetryTransaction(); len(prev) > 0 && !t.readOnly {
		s.txs.mu.Lock()
		p := s.txs.byID[string(prev)]
		s.txs.mu.Unlock()
		if p != nil && p.owner != nil && p.db == db {
			age = p.owner.age
			s.endTxn(p, abortRetried)
		}
	}
	if age == 0 {
		age = s.nextAge()
	}
	if !t.readOnly {
		t.owner = newLockOwner(age)
	}
	s.txs.mu.Lock()
	t.started = time.Now()
	t.lastUsed = t.started
	s.txs.byID[t.id] = t
	s.txs.mu.Unlock()
	return t, nil
}

// useTxn finds an open transaction of db and marks it busy; the returned
// function marks it idle again. Unknown, expired, rolled-back, replaced and
// finished transactions are INVALID_ARGUMENT ("The referenced transaction has
// expired or is no longer valid."), as in Cloud Firestore; only a transaction
// wounded by an older one, one whose lock wait timed out and one of a reset
// database are ABORTED. A malformed id is
// INVALID_ARGUMENT too.
func (s *Server) useTxn(db *database, id []byte) (*txn, func(), error) {
	if len(id) != txnIDLen {
		return nil, nil, status.Errorf(codes.InvalidArgument, "invalid transaction id")
	}
	now := time.Now()
	s.txs.mu.Lock()
	t := s.txs.byID[string(id)]
	if t == nil || t.db != db {
		s.txs.mu.Unlock()
		return nil, nil, errTxnInvalid
	}
	if t.ended.IsZero() && s.txnExpired(t, now) {
		s.txs.mu.Unlock()
		s.endTxn(t, abortExpired)
		return nil, nil, errTxnInvalid
	}
	t.busy++
	t.lastUsed = now
	s.txs.mu.Unlock()
	done := func() {
		s.txs.mu.Lock()
		t.busy--
		t.lastUsed = time.Now()
		s.txs.mu.Unlock()
	}
	if err := s.txnOpen(t); err != nil {
		done()
		return nil, nil, err
	}
	return t, done, nil
}

// txnExpired reports whether the open transaction t has been idle longer
// than the idle timeout or open longer than the maximum lifetime. The caller
// holds s.txs.mu.
func (s *Server) txnExpired(t *txn, now time.Time) bool {
	if now.Sub(t.started) > s.maxLifetime {
		return true
	}
	return t.busy == 0 && now.Sub(t.lastUsed) > s.idleTimeout
}

// txnOpen returns the error a request of t gets when t can no longer be used.
func (s *Server) txnOpen(t *txn) error {
	if t.owner == nil {
		s.txs.mu.Lock()
		ended := !t.ended.IsZero()
		s.txs.mu.Unlock()
		if ended {
			return errTxnInvalid
		}
		return nil
	}
	lt := t.db.locks
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if t.owner.aborted != abortNone {
		return abortedError(t.owner.aborted)
	}
	if t.owner.finished {
		return errTxnInvalid
	}
	return nil
}

// endTxn ends t for reason r (rollback, expiry, reset, retry), releasing its
// locks; an abort that is not a client's rollback counts in Aborts.
func (s *Server) endTxn(t *txn, r abortReason) {
	s.txs.mu.Lock()
	if t.ended.IsZero() {
		t.ended = time.Now()
	}
	s.txs.mu.Unlock()
	if t.owner == nil {
		return
	}
	if t.db.locks.abort(t.owner, r) && (r == abortExpired || r == abortReset) {
		s.counters.addAbort(t.db.project)
	}
}

// finishTxn marks a committed transaction ended.
func (s *Server) finishTxn(t *txn) {
	s.txs.mu.Lock()
	if t.ended.IsZero() {
		t.ended = time.Now()
	}
	s.txs.mu.Unlock()
}

// sweepTxns expires idle and too old transactions and forgets long-ended
// ones.
func (s *Server) sweepTxns(now time.Time) {
	var expire []*txn
	s.txs.mu.Lock()
	for id, t := range s.txs.byID {
		switch {
		case !t.ended.IsZero():
			if now.Sub(t.ended) > 2*time.Minute {
				delete(s.txs.byID, id)
			}
		case s.txnExpired(t, now):
			expire = append(expire, t)
		}
	}
	s.txs.mu.Unlock()
	for _, t := range expire {
		s.endTxn(t, abortExpired)
	}
}

// lockDocs takes shared locks on the named documents for a read-write
// transaction, in name order.
func (s *Server) lockDocs(ctx context.Context, t *txn, names []string) error {
	for _, n := range sortedUnique(names) {
		if err := t.db.locks.acquire(ctx, t.owner, "d:"+n, lockShared); err != nil {
			return err
		}
	}
	return nil
}
