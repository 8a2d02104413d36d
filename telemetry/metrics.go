package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the service's instruments.
const MeterName = "github.com/savesync/savesync"

// Instrument names. The Prometheus endpoint writes them with underscores,
// the unit (_seconds) and _total on counters: savesync.store.retries is
// savesync_store_retries_total there. docs/operations.md charts them.
const (
	// MetricMutations counts answered mutation requests by route and outcome.
	MetricMutations = "savesync.mutations"
	// MetricStoreGroupSize is the number of mutations each committed
	// transaction applied (its count is the transactions, its sum the
	// mutations committed).
	MetricStoreGroupSize = "savesync.store.group.size"
	// MetricStoreRetries counts transaction attempts run again (contention
	// or a transport failure).
	MetricStoreRetries = "savesync.store.retries"
	// MetricStoreReplays counts mutations answered from their idempotency record.
	MetricStoreReplays = "savesync.store.replays"
	// MetricStoreConflicts counts mutations refused with VERSION_CONFLICT.
	MetricStoreConflicts = "savesync.store.conflicts"
	// MetricRelayBacklog is the unpublished outbox entries the relay's
	// last round found (at most one batch).
	MetricRelayBacklog = "savesync.relay.backlog"
	// MetricRelayLag is the time from an entry's commit to Pub/Sub's
	// acknowledgement of its messages.
	MetricRelayLag = "savesync.relay.lag"
	// MetricRelayPublished counts outbox entries published.
	MetricRelayPublished = "savesync.relay.published"
	// MetricForwarderQueue is the players waiting for an Open Cloud publish.
	MetricForwarderQueue = "savesync.forwarder.queue"
	// MetricOpenCloudRateLimitWaits counts Open Cloud publishes that waited
	// for the universe's rate budget.
	MetricOpenCloudRateLimitWaits = "savesync.opencloud.ratelimit.waits"
	// MetricOpenCloudRateLimitWait is the total time publishes waited for it.
	MetricOpenCloudRateLimitWait = "savesync.opencloud.ratelimit.wait"
	// MetricStreamsOpen is the long-polls and event streams open now.
	MetricStreamsOpen = "savesync.streams.open"
)

// Attribute keys.
const (
	// AttrRoute is the route template, as in http.route.
	AttrRoute = "http.route"
	// AttrOutcome is "ok", "replayed", or the error code of the answer.
	AttrOutcome = "outcome"
)

// Metrics holds the service's instruments. Its methods satisfy the
// observer interfaces of handlers, store, events and opencloud; all are
// safe for concurrent use and cost a few atomic adds.
type Metrics struct {
	mutations    metric.Int64Counter
	groupSize    metric.Int64Histogram
	retries      metric.Int64Counter
	replays      metric.Int64Counter
	conflicts    metric.Int64Counter
	relayBacklog metric.Int64Gauge
	relayLag     metric.Float64Histogram
	relayPub     metric.Int64Counter
	fwdQueue     metric.Int64Gauge
	rateWaits    metric.Int64Counter
	rateWait     metric.Float64Counter
	streamsOpen  metric.Int64UpDownCounter
}

// NewMetrics creates the instruments on mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := mp.Meter(MeterName)
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var x Metrics
	var err error
	x.mutations, err = m.Int64Counter(MetricMutations, metric.WithUnit("{mutation}"),
		metric.WithDescription("Answered mutation requests by route and outcome (ok, replayed, or the error code)."))
	check(err)
	x.groupSize, err = m.Int64Histogram(MetricStoreGroupSize, metric.WithUnit("{mutation}"),
		metric.WithDescription("Mutations applied by each committed transaction (group commit per player)."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64))
	check(err)
	x.retries, err = m.Int64Counter(MetricStoreRetries, metric.WithUnit("{attempt}"),
		metric.WithDescription("Transaction attempts run again after contention or a transport failure."))
	check(err)
	x.replays, err = m.Int64Counter(MetricStoreReplays, metric.WithUnit("{mutation}"),
		metric.WithDescription("Mutations answered from their idempotency record."))
	check(err)
	x.conflicts, err = m.Int64Counter(MetricStoreConflicts, metric.WithUnit("{mutation}"),
		metric.WithDescription("Mutations refused with VERSION_CONFLICT."))
	check(err)
	x.relayBacklog, err = m.Int64Gauge(MetricRelayBacklog, metric.WithUnit("{entry}"),
		metric.WithDescription("Unpublished outbox entries found by the relay's last round (at most one batch)."))
	check(err)
	x.relayLag, err = m.Float64Histogram(MetricRelayLag, metric.WithUnit("s"),
		metric.WithDescription("Time from an entry's commit to Pub/Sub's acknowledgement of its messages."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
	check(err)
	x.relayPub, err = m.Int64Counter(MetricRelayPublished, metric.WithUnit("{entry}"),
		metric.WithDescription("Outbox entries published to Pub/Sub."))
	check(err)
	x.fwdQueue, err = m.Int64Gauge(MetricForwarderQueue, metric.WithUnit("{player}"),
		metric.WithDescription("Players waiting for an Open Cloud messaging publish."))
	check(err)
	x.rateWaits, err = m.Int64Counter(MetricOpenCloudRateLimitWaits, metric.WithUnit("{publish}"),
		metric.WithDescription("Open Cloud publishes that waited for the universe's rate budget."))
	check(err)
	x.rateWait, err = m.Float64Counter(MetricOpenCloudRateLimitWait, metric.WithUnit("s"),
		metric.WithDescription("Time Open Cloud publishes waited for the universe's rate budget."))
	check(err)
	x.streamsOpen, err = m.Int64UpDownCounter(MetricStreamsOpen, metric.WithUnit("{stream}"),
		metric.WithDescription("Long-polls and companion event streams open now, by route."))
	check(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &x, nil
}

// MutationAnswered counts an answered mutation request.
func (m *Metrics) MutationAnswered(ctx context.Context, route, outcome string) {
	m.mutations.Add(ctx, 1, metric.WithAttributes(attribute.String(AttrRoute, route), attribute.String(AttrOutcome, outcome)))
}

// StreamsChanged adds delta to the streams open on route.
func (m *Metrics) StreamsChanged(ctx context.Context, route string, delta int64) {
	m.streamsOpen.Add(ctx, delta, metric.WithAttributes(attribute.String(AttrRoute, route)))
}

// TransactionCommitted records a committed transaction of mutations.
func (m *Metrics) TransactionCommitted(ctx context.Context, mutations int) {
	m.groupSize.Record(ctx, int64(mutations))
}

// TransactionRetried counts an attempt run again.
func (m *Metrics) TransactionRetried(ctx context.Context) { m.retries.Add(ctx, 1) }

// MutationReplayed counts a mutation answered from its idempotency record.
func (m *Metrics) MutationReplayed(ctx context.Context) { m.replays.Add(ctx, 1) }

// VersionConflict counts a mutation refused with VERSION_CONFLICT.
func (m *Metrics) VersionConflict(ctx context.Context) { m.conflicts.Add(ctx, 1) }

// RelayBacklog records the unpublished entries a relay round found.
func (m *Metrics) RelayBacklog(ctx context.Context, pending int) {
	m.relayBacklog.Record(ctx, int64(pending))
}

// EventPublished records an entry published lag after its commit.
func (m *Metrics) EventPublished(ctx context.Context, lag time.Duration) {
	m.relayPub.Add(ctx, 1)
	m.relayLag.Record(ctx, max(lag, 0).Seconds())
}

// ForwarderQueue records the players waiting for an Open Cloud publish.
func (m *Metrics) ForwarderQueue(ctx context.Context, players int) {
	m.fwdQueue.Record(ctx, int64(players))
}

// RateLimitWaited records a publish that waited d for the rate budget.
func (m *Metrics) RateLimitWaited(ctx context.Context, d time.Duration) {
	m.rateWaits.Add(ctx, 1)
	m.rateWait.Add(ctx, d.Seconds())
}
