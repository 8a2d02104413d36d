// Package store keeps savesync's player saves in Firestore: one transaction
// per mutation that also writes the ledger entry (audit record, idempotency
// record and event outbox in one), session leases, and the reads the
// companion and support tools need. The domain rules come from package save;
// this package only decides what is read and written, and when.
package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	apiv1 "cloud.google.com/go/firestore/apiv1"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// Store is savesync's Firestore persistence. It is safe for concurrent use.
type Store struct {
	fs          *firestore.Client
	gapic       *apiv1.Client
	project     string
	database    string // projects/{p}/databases/(default)
	cfg         *save.Config
	now         func() time.Time
	jitter      func(n int64) int64
	newID       func() string
	leaseTTL    time.Duration
	retention   time.Duration
	onCommit    func()
	maxAttempts int
	maxBatch    int
	// beforeApply, when set (by tests only), runs before each mutation of a
	// group commit is applied.
	beforeApply func(*MutationRequest)

	queuesMu sync.Mutex
	queues   map[int64]*playerQueue

	metrics  storeMetrics
	observer Observer
	tracer   trace.Tracer
}

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// LeaseTTL is how long a join's session lease lasts without renewal (90 s).
	LeaseTTL time.Duration
	// LedgerRetention is the age at which a ledger entry's expireAt falls,
	// for a Firestore TTL policy on that field (0 = entries never expire).
	LedgerRetention time.Duration
	// OnCommit is called after every committed group of mutations, so the
	// outbox relay can publish at once instead of at its next poll.
	OnCommit func()
	// Now is the clock for leases and ledger times (time.Now).
	Now func() time.Time
	// Jitter returns a random number in [0, n) for retry backoff (math/rand).
	Jitter func(n int64) int64
	// NewID makes random identifiers for sessions (UUIDv4-like hex).
	NewID func() string
	// MaxAttempts bounds the attempts of one transaction (8).
	MaxAttempts int
	// MaxGroup bounds how many queued mutations of one player commit together (32).
	MaxGroup int
	// Observer hears what the store did, for the service's metrics (none).
	Observer Observer
	// TracerProvider makes the spans of group commits (the global one,
	// which the Firestore client uses too).
	TracerProvider trace.TracerProvider
}

// Observer hears about the store's work as it happens, for the service's
// metrics; the Metrics snapshot counts the same events. Its methods must be
// quick and safe for concurrent use.
type Observer interface {
	// TransactionCommitted is called once per committed mutation
	// transaction with the number of mutations it applied.
	TransactionCommitted(ctx context.Context, mutations int)
	// TransactionRetried is called for every attempt run again.
	TransactionRetried(ctx context.Context)
	// MutationReplayed is called for a mutation answered from its
	// idempotency record.
	MutationReplayed(ctx context.Context)
	// VersionConflict is called for a mutation refused with VERSION_CONFLICT.
	VersionConflict(ctx context.Context)
}

// noObserver is the Observer of a store given none.
type noObserver struct{}

func (noObserver) TransactionCommitted(context.Context, int) {}
func (noObserver) TransactionRetried(context.Context)        {}
func (noObserver) MutationReplayed(context.Context)          {}
func (noObserver) VersionConflict(context.Context)           {}

// storeMetrics counts what the load tool and benchmarks report.
type storeMetrics struct {
	retries     atomic.Int64
	commits     atomic.Int64
	groupedMuts atomic.Int64
	replays     atomic.Int64
}

// Metrics is a snapshot of the store's counters.
type Metrics struct {
	// Transactions is the number of mutation transactions committed.
	Transactions int64 `json:"transactions"`
	// Mutations is the number of mutations committed inside them (≥ Transactions when grouped).
	Mutations int64 `json:"mutations"`
	// Retries is the number of transaction attempts that had to run again.
	Retries int64 `json:"retries"`
	// Replays is the number of requests answered from an idempotency record.
	Replays int64 `json:"replays"`
}

// New returns a Store over a Firestore database. fs serves queries and
// simple reads; gapic, the generated client for the same database, runs the
// mutation transactions, which begin inline with their first read.
func New(fs *firestore.Client, gapic *apiv1.Client, project string, cfg *save.Config, opts Options) *Store {
	s := &Store{
		fs:          fs,
		gapic:       gapic,
		project:     project,
		database:    fmt.Sprintf("projects/%s/databases/(default)", project),
		cfg:         cfg,
		now:         opts.Now,
		jitter:      opts.Jitter,
		newID:       opts.NewID,
		leaseTTL:    opts.LeaseTTL,
		retention:   opts.LedgerRetention,
		onCommit:    opts.OnCommit,
		maxAttempts: opts.MaxAttempts,
		maxBatch:    opts.MaxGroup,
		queues:      make(map[int64]*playerQueue),
		observer:    opts.Observer,
	}
	if s.observer == nil {
		s.observer = noObserver{}
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	s.tracer = tp.Tracer("github.com/savesync/savesync/store")
	if s.now == nil {
		s.now = time.Now
	}
	if s.jitter == nil {
		s.jitter = rand.Int64N
	}
	if s.newID == nil {
		s.newID = func() string { return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64()) }
	}
	if s.leaseTTL <= 0 {
		s.leaseTTL = 90 * time.Second
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = 8
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 32
	}
	return s
}

// Metrics returns the store's counters.
func (s *Store) Metrics() Metrics {
	return Metrics{
		Transactions: s.metrics.commits.Load(),
		Mutations:    s.metrics.groupedMuts.Load(),
		Retries:      s.metrics.retries.Load(),
		Replays:      s.metrics.replays.Load(),
	}
}

// wrapOp names the operation on an error that is not a domain error, so
// the internal-error log line says what failed. Domain errors pass as they
// are: they already say what to fix, and travel to the caller unchanged.
func wrapOp(errp *error, format string, args ...any) {
	if *errp == nil {
		return
	}
	if _, ok := save.AsError(*errp); ok {
		return
	}
	if transient(*errp) {
		// The database is down or overloaded for a moment (a restart, a
		// lost connection): the caller retries, as after a busy save.
		*errp = save.Errorf(save.CodeUnavailable, "the database did not answer; retry (with the same Idempotency-Key for mutations)").
			WithDetail("cause", status.Code(*errp).String())
		return
	}
	*errp = fmt.Errorf(format+": %w", append(args, *errp)...)
}

// transient reports a database failure that a retry of the whole request
// may not meet: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or
// RESOURCE_EXHAUSTED from Firestore.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}
