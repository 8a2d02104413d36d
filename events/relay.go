// Package events carries savesync's events out of Firestore: a relay that
// drains the ledger's outbox onto two Google Cloud Pub/Sub topics
// (invalidations and audit), and a forwarder that turns invalidations into
// Roblox Open Cloud messages for the live game servers (published through
// package opencloud). Delivery is at least once; consumers dedupe on
// (userId, version) with a Deduper.
package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/savesync/savesync/logging"
	"github.com/savesync/savesync/save"
)

// Default topic ids.
const (
	DefaultInvalidationTopic = "savesync-invalidations"
	DefaultAuditTopic        = "savesync-audit"
)

// DefaultRelayBatchSize is the relay's batch size when RelayOptions gives
// none: the most writes one Firestore commit or BatchWrite request takes,
// so a batch's marks would fit one request (the BulkWriter that marks
// them sends 20 to a request, in parallel). Queries have no limit of
// their own; a batch's messages, one or two per entry, are all in the
// publishers at once.
const DefaultRelayBatchSize = 500

// Outbox is the store side of the relay; *store.Store implements it.
type Outbox interface {
	PendingEvents(ctx context.Context, limit int) ([]save.Event, error)
	MarkPublished(ctx context.Context, events []save.Event) error
	ClaimRelay(ctx context.Context, holder string, ttl time.Duration) (save.RelayLease, error)
	ReleaseRelay(ctx context.Context, holder string) error
}

// RelayOptions tune a Relay. Zero values take the defaults.
type RelayOptions struct {
	// InvalidationTopic and AuditTopic are topic ids or full names
	// (DefaultInvalidationTopic, DefaultAuditTopic).
	InvalidationTopic string
	AuditTopic        string
	// PollInterval is how often the relay looks for unpublished entries
	// when nothing wakes it (1 s). Commits on other instances are seen
	// within this interval.
	PollInterval time.Duration
	// BatchSize bounds the entries read per query and marked together
	// (DefaultRelayBatchSize). Larger batches mean fewer outbox queries
	// per entry.
	BatchSize int
	// LeaseTTL is how long the relay lease lasts without renewal (30 s): the
	// longest a dead instance keeps the others from draining. The relay
	// renews it once less than half is left, so a batch has at least
	// TTL/2 to be published and marked.
	LeaseTTL time.Duration
	// Now is the clock the lease's expiry is read against (time.Now). It
	// must be the outbox's clock, the one ClaimRelay writes expiries with.
	Now func() time.Time
	// Holder names this instance in the relay lease (a random id).
	Holder string
	// Observer hears the backlog and each entry's lag, for the service's
	// metrics (none).
	Observer RelayObserver
}

// RelayObserver hears what a Relay found and published; its methods must
// be quick and safe for concurrent use.
type RelayObserver interface {
	// RelayBacklog is called after each read of the outbox by the lease
	// holder with the unpublished entries found (at most one batch).
	RelayBacklog(ctx context.Context, pending int)
	// EventPublished is called for each entry published, lag after its
	// commit.
	EventPublished(ctx context.Context, lag time.Duration)
}

// noRelayObserver is the RelayObserver of a relay given none.
type noRelayObserver struct{}

func (noRelayObserver) RelayBacklog(context.Context, int)             {}
func (noRelayObserver) EventPublished(context.Context, time.Duration) {}

// Relay publishes committed mutations' events from the outbox. Entries stay
// unpublished in the ledger until both messages of an entry are
// acknowledged by Pub/Sub, so a relay that dies between commit and publish
// loses nothing: the next relay, on any instance, publishes them.
//
// One instance drains at a time, under a lease in Firestore: one drainer
// keeps each player's events in version order on the topics (messages
// carry the user id as ordering key), and the lease costs a write per
// TTL/2 rather than a claim write per entry.
type Relay struct {
	outbox Outbox
	inv    *pubsub.Publisher
	audit  *pubsub.Publisher
	opts   RelayOptions
	wake   chan struct{}

	// mu keeps Drain calls one at a time (one drainer keeps each
	// player's order) and guards expires.
	mu sync.Mutex
	// expires is when the lease this relay last claimed runs out, on the
	// outbox's clock; zero when it holds none or is unsure.
	expires time.Time
}

// NewRelay returns a relay from outbox to the client's topics. The topics
// must exist (EnsureTopics).
func NewRelay(outbox Outbox, client *pubsub.Client, opts RelayOptions) *Relay {
	if opts.InvalidationTopic == "" {
		opts.InvalidationTopic = DefaultInvalidationTopic
	}
	if opts.AuditTopic == "" {
		opts.AuditTopic = DefaultAuditTopic
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultRelayBatchSize
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
	}
	if opts.Holder == "" {
		opts.Holder = "relay-" + uuid.NewString()
	}
	if opts.Observer == nil {
		opts.Observer = noRelayObserver{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Relay{
		outbox: outbox,
		inv:    client.Publisher(opts.InvalidationTopic),
		audit:  client.Publisher(opts.AuditTopic),
		opts:   opts,
		wake:   make(chan struct{}, 1),
	}
	r.inv.EnableMessageOrdering = true
	r.audit.EnableMessageOrdering = true
	return r
}

// Notify wakes the relay at once, for a commit made by this instance.
// It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run drains the outbox whenever notified and every poll interval until
// ctx ends, then releases the lease and flushes the publishers. Failures
// are logged and retried on the next round; entries are never dropped.
func (r *Relay) Run(ctx context.Context) error {
	log := logging.FromContext(ctx)
	defer r.stop()
	for {
		if _, err := r.Drain(ctx); err != nil && ctx.Err() == nil {
			log.Warn("outbox relay round failed; retrying", "error", err.Error())
		}
		t := time.NewTimer(r.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.mu.Lock()
			r.expires = time.Time{}
			err := r.outbox.ReleaseRelay(rctx, r.opts.Holder)
			r.mu.Unlock()
			cancel()
			if err != nil {
				log.Warn("outbox relay lease not released; it expires by itself", "error", err.Error())
			}
			return nil
		case <-r.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// stop flushes and stops the publishers.
func (r *Relay) stop() {
	r.inv.Stop()
	r.audit.Stop()
}

// maxRounds bounds the batches of one Drain call, so the lease is checked
// and other work interleaves even with a large backlog.
const maxRounds = 50

// Drain publishes unpublished entries, batch after batch, while this
// relay holds the lease, and reports how many entries it published. An
// instance that does not hold the lease publishes nothing and returns 0.
//
// The lease is checked before each batch is read and again before it is
// published, against the expiry this relay last got: while more than
// half the TTL is left the check costs nothing (ClaimRelay would return
// without writing), and otherwise it claims, which renews the lease or
// reports that another instance took it. So a drain of many batches
// claims at most once per TTL/2 instead of once per batch, and no batch
// starts publishing with less than TTL/2 of the lease left.
func (r *Relay) Drain(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for range maxRounds {
		held, err := r.holdLease(ctx)
		if err != nil || !held {
			return total, err
		}
		events, err := r.outbox.PendingEvents(ctx, r.opts.BatchSize)
		if err != nil {
			return total, err
		}
		r.opts.Observer.RelayBacklog(ctx, len(events))
		if len(events) == 0 {
			return total, nil
		}
		// The read may have taken long; check again before publishing.
		if held, err := r.holdLease(ctx); err != nil || !held {
			return total, err
		}
		done, pubErr := r.publish(ctx, events)
		if len(done) > 0 {
			if err := r.outbox.MarkPublished(ctx, done); err != nil {
				return total, errors.Join(pubErr, err)
			}
			now := time.Now()
			for _, e := range done {
				r.opts.Observer.EventPublished(ctx, now.Sub(e.CommittedAt))
			}
			total += len(done)
		}
		if pubErr != nil {
			return total, pubErr
		}
		if len(events) < r.opts.BatchSize {
			return total, nil
		}
	}
	return total, nil
}

// holdLease reports whether this relay holds the lease with more than
// half the TTL left, claiming it (a Firestore transaction) only when the
// expiry it remembers leaves that or less. A failed claim forgets the
// expiry, so the next check claims again. The caller holds r.mu.
func (r *Relay) holdLease(ctx context.Context) (bool, error) {
	if !r.expires.IsZero() && r.expires.Sub(r.opts.Now()) > r.opts.LeaseTTL/2 {
		return true, nil
	}
	r.expires = time.Time{}
	lease, err := r.outbox.ClaimRelay(ctx, r.opts.Holder, r.opts.LeaseTTL)
	if err != nil || !lease.Held {
		return false, err
	}
	r.expires = lease.ExpiresAt
	return true, nil
}

// pendingPublish is one event's messages in flight.
type pendingPublish struct {
	event   save.Event
	results []*pubsub.PublishResult
}

// publish sends each event's messages and waits for Pub/Sub to accept
// them. It returns the events whose messages were all accepted. Once one
// of a player's events fails, the player's later events in the batch are
// not returned either: they stay pending and are published again after
// the failed one, so a consumer that dedupes on (userId, version) still
// sees the player's versions in order.
func (r *Relay) publish(ctx context.Context, events []save.Event) ([]save.Event, error) {
	pending := make([]pendingPublish, 0, len(events))
	for _, e := range events {
		p := pendingPublish{event: e}
		if needsInvalidation(e) {
			m, err := invalidationMessage(e)
			if err != nil {
				return nil, fmt.Errorf("events.Relay: encode %d v%d: %w", e.UserID, e.Version, err)
			}
			p.results = append(p.results, r.inv.Publish(ctx, m))
		}
		m, err := auditMessage(e)
		if err != nil {
			return nil, fmt.Errorf("events.Relay: encode %d v%d: %w", e.UserID, e.Version, err)
		}
		p.results = append(p.results, r.audit.Publish(ctx, m))
		pending = append(pending, p)
	}

	failed := make(map[int64]bool)
	var errs []error
	done := make([]save.Event, 0, len(pending))
	for _, p := range pending {
		ok := !failed[p.event.UserID]
		for _, res := range p.results {
			if _, err := res.Get(ctx); err != nil {
				if ok {
					errs = append(errs, fmt.Errorf("events.Relay: publish %d v%d: %w", p.event.UserID, p.event.Version, err))
				}
				ok = false
			}
		}
		if !ok {
			failed[p.event.UserID] = true
			continue
		}
		done = append(done, p.event)
	}
	for uid := range failed {
		key := strconv.FormatInt(uid, 10)
		r.inv.ResumePublish(key)
		r.audit.ResumePublish(key)
	}
	return done, errors.Join(errs...)
}
