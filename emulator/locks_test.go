package emulator

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// waiters counts the requests waiting for key.
func (lt *lockTable) waiters(key string) int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if e := lt.entries[key]; e != nil {
		return len(e.queue)
	}
	return 0
}

// txnRig drives transactions of one project through the generated client,
// so a test controls the exact interleaving of reads and commits.
type txnRig struct {
	t   *testing.T
	srv *Server
	g   *vkit.Client
	p   string
}

func newTxnRig(t *testing.T, srv *Server) *txnRig {
	t.Helper()
	c, err := vkit.NewClient(context.Background(), option.WithGRPCConn(dial(t, srv)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &txnRig{t: t, srv: srv, g: c, p: testProject(t)}
}

func (r *txnRig) name(path string) string { return dbPath(r.p) + "/documents/" + path }

// begin starts a read-write transaction; retry names the attempt it retries.
func (r *txnRig) begin(retry []byte) []byte {
	r.t.Helper()
	opts := &firestorepb.TransactionOptions{Mode: &firestorepb.TransactionOptions_ReadWrite_{ReadWrite: &firestorepb.TransactionOptions_ReadWrite{RetryTransaction: retry}}}
	bt, err := r.g.BeginTransaction(context.Background(), &firestorepb.BeginTransactionRequest{Database: dbPath(r.p), Options: opts})
	if err != nil {
		r.t.Fatalf("BeginTransaction: %v", err)
	}
	return bt.Transaction
}

// read reads a document in tx and returns the status of the read.
func (r *txnRig) read(tx []byte, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := r.g.BatchGetDocuments(ctx, &firestorepb.BatchGetDocumentsRequest{
		Database:            dbPath(r.p),
		Documents:           []string{r.name(path)},
		ConsistencySelector: &firestorepb.BatchGetDocumentsRequest_Transaction{Transaction: tx},
	})
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// query runs a query over collection in tx and returns its status.
func (r *txnRig) query(tx []byte, collection string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := r.g.RunQuery(ctx, &firestorepb.RunQueryRequest{
		Parent:              dbPath(r.p) + "/documents",
		QueryType:           &firestorepb.RunQueryRequest_StructuredQuery{StructuredQuery: &firestorepb.StructuredQuery{From: []*firestorepb.StructuredQuery_CollectionSelector{{CollectionId: collection}}}},
		ConsistencySelector: &firestorepb.RunQueryRequest_Transaction{Transaction: tx},
	})
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// commit commits tx (nil: a plain write) setting n on path.
func (r *txnRig) commit(tx []byte, path string, n int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.g.Commit(ctx, &firestorepb.CommitRequest{Database: dbPath(r.p), Transaction: tx, Writes: []*firestorepb.Write{{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: r.name(path), Fields: map[string]*firestorepb.Value{"n": {ValueType: &firestorepb.Value_IntegerValue{IntegerValue: n}}}}},
	}}})
	return err
}

// commitAsync commits in the background; the result arrives on the channel.
func (r *txnRig) commitAsync(tx []byte, path string, n int64) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.commit(tx, path, n) }()
	return done
}

func (r *txnRig) rollback(tx []byte) {
	r.t.Helper()
	if err := r.g.Rollback(context.Background(), &firestorepb.RollbackRequest{Database: dbPath(r.p), Transaction: tx}); err != nil {
		r.t.Fatalf("Rollback: %v", err)
	}
}

// awaitWaiters blocks until n requests wait for the lock on key, which shows
// a request is blocked rather than slow.
func (r *txnRig) awaitWaiters(key string, n int) {
	r.t.Helper()
	db, err := r.srv.database(dbPath(r.p))
	if err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for db.locks.waiters(key) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d requests wait for %s, want %d", db.locks.waiters(key), key, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// value reads n of path outside any transaction.
func (r *txnRig) value(path string) int64 {
	r.t.Helper()
	d, err := r.g.GetDocument(context.Background(), &firestorepb.GetDocumentRequest{Name: r.name(path)})
	if err != nil {
		r.t.Fatalf("GetDocument %s: %v", path, err)
	}
	return d.GetFields()["n"].GetIntegerValue()
}

func (r *txnRig) aborts() int64 { return r.srv.Counters(r.p).Aborts }

func (r *txnRig) seed(path string, n int64) {
	r.t.Helper()
	if err := r.commit(nil, path, n); err != nil {
		r.t.Fatalf("seed %s: %v", path, err)
	}
}

func wantWounded(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "cross-transaction contention") {
		t.Errorf("%s: %v, want ABORTED (cross-transaction contention)", what, err)
	}
}

func TestSharedReadsDoNotBlockEachOther(t *testing.T) {
	tests := []struct {
		name string
		read func(r *txnRig, tx []byte) error
	}{
		{"document get", func(r *txnRig, tx []byte) error { return r.read(tx, "s/a") }},
		{"collection query", func(r *txnRig, tx []byte) error { return r.query(tx, "s") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTxnRig(t, testSrv)
			r.seed("s/a", 1)
			older, younger := r.begin(nil), r.begin(nil)
			if err := tt.read(r, older); err != nil {
				t.Fatalf("older read: %v", err)
			}
			// Before shared locks, this read waited for the older transaction.
			if err := tt.read(r, younger); err != nil {
				t.Fatalf("younger read beside the older reader: %v", err)
			}
			for _, tx := range [][]byte{older, younger} {
				if _, err := r.g.Commit(context.Background(), &firestorepb.CommitRequest{Database: dbPath(r.p), Transaction: tx}); err != nil {
					t.Errorf("read-only commit: %v", err)
				}
			}
			if a := r.aborts(); a != 0 {
				t.Errorf("aborts = %d, want 0", a)
			}
		})
	}
}

func TestWriteWaitsForOlderReader(t *testing.T) {
	tests := []struct {
		name   string
		writer func(r *txnRig) <-chan error
	}{
		{"younger transaction", func(r *txnRig) <-chan error {
			tx := r.begin(nil)
			if err := r.read(tx, "w/a"); err != nil {
				r.t.Fatalf("younger read: %v", err)
			}
			return r.commitAsync(tx, "w/a", 2)
		}},
		{"non-transactional write", func(r *txnRig) <-chan error { return r.commitAsync(nil, "w/a", 2) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTxnRig(t, testSrv)
			r.seed("w/a", 1)
			reader := r.begin(nil)
			if err := r.read(reader, "w/a"); err != nil {
				t.Fatalf("reader: %v", err)
			}
			done := tt.writer(r)
			r.awaitWaiters("d:"+r.name("w/a"), 1)
			select {
			case err := <-done:
				t.Fatalf("write finished (%v) while an older transaction held a shared lock", err)
			default:
			}
			r.rollback(reader)
			if err := <-done; err != nil {
				t.Fatalf("write after the reader ended: %v", err)
			}
			if got := r.value("w/a"); got != 2 {
				t.Errorf("n = %d, want 2", got)
			}
			if a := r.aborts(); a != 0 {
				t.Errorf("aborts = %d, want 0 (a younger writer waits for an older reader)", a)
			}
		})
	}
}

func TestOlderTransactionWoundsYounger(t *testing.T) {
	tests := []struct {
		name string
		run  func(r *txnRig)
	}{
		{"younger commits first and waits, older commits", func(r *txnRig) {
			older, younger := r.begin(nil), r.begin(nil)
			mustRead(r, older, "o/a")
			mustRead(r, younger, "o/a")
			done := r.commitAsync(younger, "o/a", 20)
			r.awaitWaiters("d:"+r.name("o/a"), 1)
			if err := r.commit(older, "o/a", 10); err != nil {
				r.t.Fatalf("older commit: %v", err)
			}
			wantWounded(r.t, "younger commit", <-done)
		}},
		{"older commits first", func(r *txnRig) {
			older, younger := r.begin(nil), r.begin(nil)
			mustRead(r, younger, "o/a")
			mustRead(r, older, "o/a")
			if err := r.commit(older, "o/a", 10); err != nil {
				r.t.Fatalf("older commit: %v", err)
			}
			wantWounded(r.t, "younger commit", r.commit(younger, "o/a", 20))
		}},
		{"crossed reads of two documents", func(r *txnRig) {
			r.seed("o/b", 1)
			older, younger := r.begin(nil), r.begin(nil)
			mustRead(r, older, "o/a")
			mustRead(r, younger, "o/b")
			mustRead(r, older, "o/b")
			mustRead(r, younger, "o/a")
			done := r.commitAsync(younger, "o/b", 20)
			r.awaitWaiters("d:"+r.name("o/b"), 1)
			if err := r.commit(older, "o/a", 10); err != nil {
				r.t.Fatalf("older commit: %v", err)
			}
			wantWounded(r.t, "younger commit", <-done)
			if got := r.value("o/b"); got != 1 {
				r.t.Errorf("o/b = %d, want 1 (the wounded transaction wrote nothing)", got)
			}
		}},
		{"a retry keeps its age and beats a newer transaction", func(r *txnRig) {
			older, first := r.begin(nil), r.begin(nil)
			mustRead(r, older, "o/a")
			mustRead(r, first, "o/a")
			if err := r.commit(older, "o/a", 10); err != nil {
				r.t.Fatalf("older commit: %v", err)
			}
			wantWounded(r.t, "first attempt", r.commit(first, "o/a", 20))
			r.rollback(first)
			newer := r.begin(nil)
			retry := r.begin(first)
			mustRead(r, newer, "o/a")
			mustRead(r, retry, "o/a")
			done := r.commitAsync(newer, "o/a", 30)
			r.awaitWaiters("d:"+r.name("o/a"), 1)
			if err := r.commit(retry, "o/a", 20); err != nil {
				r.t.Fatalf("retried commit: %v", err)
			}
			wantWounded(r.t, "newer commit", <-done)
			if got := r.value("o/a"); got != 20 {
				r.t.Errorf("n = %d, want 20 (the retry's write)", got)
			}
			if a := r.aborts(); a != 2 {
				r.t.Errorf("aborts = %d, want 2", a)
			}
		}},
		{"a queried range: the older writer wounds the younger reader", func(r *txnRig) {
			older, younger := r.begin(nil), r.begin(nil)
			if err := r.query(younger, "o"); err != nil {
				r.t.Fatalf("younger query: %v", err)
			}
			if err := r.commit(older, "o/new", 1); err != nil {
				r.t.Fatalf("older insert: %v", err)
			}
			wantWounded(r.t, "younger commit", r.commit(younger, "o/other", 2))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTxnRig(t, testSrv)
			r.seed("o/a", 1)
			tt.run(r)
			if a := r.aborts(); a < 1 {
				t.Errorf("aborts = %d, want at least 1", a)
			}
		})
	}
}

func mustRead(r *txnRig, tx []byte, path string) {
	r.t.Helper()
	if err := r.read(tx, path); err != nil {
		r.t.Fatalf("read %s: %v", path, err)
	}
}

func TestLockWaitTimesOut(t *testing.T) {
	srv, err := Start(Options{LockWaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r := newTxnRig(t, srv)
	r.seed("lt/a", 1)
	older, younger := r.begin(nil), r.begin(nil)
	mustRead(r, older, "lt/a")
	mustRead(r, younger, "lt/a")
	err = r.commit(younger, "lt/a", 2)
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "Transaction lock timeout") {
		t.Fatalf("younger commit: %v, want ABORTED (Transaction lock timeout)", err)
	}
	// The timed-out transaction is over: its locks are gone.
	if err := r.read(younger, "lt/a"); status.Code(err) != codes.Aborted {
		t.Errorf("read in the timed-out transaction: %v, want ABORTED", err)
	}
	if err := r.commit(older, "lt/a", 3); err != nil {
		t.Fatalf("older commit: %v", err)
	}
	if got := r.value("lt/a"); got != 3 {
		t.Errorf("n = %d, want 3", got)
	}
	if a := r.aborts(); a != 1 {
		t.Errorf("aborts = %d, want 1", a)
	}
}

func TestRunTransactionReadThenWriteContends(t *testing.T) {
	c, p := newClient(t)
	// A guard, so a read that blocks fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	doc := c.Doc("rw/a")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(0)}); err != nil {
		t.Fatal(err)
	}
	var attempts [2]int
	olderRead := make(chan struct{})
	youngerRead := make(chan struct{})
	increment := func(i int, after func()) func(context.Context, *firestore.Transaction) error {
		return func(ctx context.Context, tx *firestore.Transaction) error {
			attempts[i]++
			snap, err := tx.Get(doc)
			if err != nil {
				return err
			}
			if attempts[i] == 1 {
				after()
			}
			n, _ := snap.DataAt("n")
			return tx.Set(doc, map[string]any{"n": n.(int64) + 1})
		}
	}
	var wg sync.WaitGroup
	var errs [2]error
	wg.Add(2)
	go func() { // older: reads, then commits once the younger has read too
		defer wg.Done()
		errs[0] = c.RunTransaction(ctx, increment(0, func() {
			close(olderRead)
			select {
			case <-youngerRead:
			case <-ctx.Done():
			}
		}))
	}()
	go func() { // younger: begins after the older has read
		defer wg.Done()
		<-olderRead
		errs[1] = c.RunTransaction(ctx, increment(1, func() { close(youngerRead) }))
	}()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("older: %v, younger: %v; both should commit", errs[0], errs[1])
	}
	if attempts != [2]int{1, 2} {
		t.Errorf("attempts (older, younger) = %v, want [1 2]: the younger is aborted and retried", attempts)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := snap.DataAt("n"); n != int64(2) {
		t.Errorf("n = %v, want 2 (no lost update)", n)
	}
	if a := testSrv.Counters(p).Aborts; a != 1 {
		t.Errorf("aborts = %d, want 1", a)
	}
}

func TestConcurrentIncrementsLoseNothing(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	doc := c.Doc("counters/hot")
	if _, err := doc.Set(ctx, map[string]any{"n": int64(0)}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 20, 3
	var attempts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				errs <- c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
					attempts.Add(1)
					snap, err := tx.Get(doc)
					if err != nil {
						return err
					}
					n, _ := snap.DataAt("n")
					return tx.Set(doc, map[string]any{"n": n.(int64) + 1})
				}, firestore.MaxAttempts(50))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("RunTransaction: %v", err)
		}
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := snap.DataAt("n"); got != int64(workers*each) {
		t.Errorf("n = %v, want %d", got, workers*each)
	}
	// Every abort is answered by exactly one retry.
	aborts := testSrv.Counters(p).Aborts
	if retries := attempts.Load() - workers*each; retries != aborts {
		t.Errorf("retries = %d, aborts = %d; want equal", retries, aborts)
	}
	t.Logf("%d transactions, %d aborted attempts", workers*each, aborts)
}
