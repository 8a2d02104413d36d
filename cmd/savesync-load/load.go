package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/store"
)

// firstPlayerID is the first simulated Roblox user id.
const firstPlayerID = 1_000_000

// runLoad runs every phase against the stack and checks the invariants.
func runLoad(ctx context.Context, st *stack, p params) (*Report, error) {
	w := &world{st: st, p: p, exp: newExpectations()}
	w.c = newCaller(st.bases, p.Concurrency, p.Attempts, p.Workers+p.HotCallers+p.Servers, p.Seed)
	w.nextID.Store(firstPlayerID)
	for i := range p.Servers {
		w.jobs = append(w.jobs, fmt.Sprintf("load-job-%d", i+1))
	}
	rep := &Report{Machine: describeMachine(), Params: p, Stack: describeStack(st)}

	var smp *sampler
	if st.procs != nil {
		smp = startSampler(p.SampleEvery, st.procs.all, st.procs.dataDir)
	}
	var leases *leaseSampler
	if st.events {
		leases = startLeaseSampler(ctx, st.clients.Firestore)
	}

	setup := newRecorder()
	if err := w.populate(ctx, setup); err != nil {
		return nil, err
	}
	floor, err := measureFloor(ctx, st.clients.Firestore, p.FloorSamples, p.Latency)
	if err != nil {
		return nil, err
	}
	rep.Floor = floor

	probe, err := w.probe(ctx)
	if err != nil {
		return nil, err
	}
	rep.Probe = probe

	if rep.Comparison, err = w.compare(ctx); err != nil {
		return nil, err
	}

	var pl *poller
	pollRec := newRecorder()
	if st.changes {
		pl = w.startPolling(ctx, pollRec)
	}

	var crashes *crasher
	if p.CrashEvery > 0 {
		targets := st.procs.instances
		if p.CrashEmulator {
			targets = []*proc{st.procs.emulator}
		}
		crashes = startCrashes(ctx, p.CrashEvery, targets)
		w.crashes = crashes
	}

	if p.Mutations > 0 {
		// The soak: one long mixed workload, faults armed throughout.
		injected := map[string]int64{}
		stopFaults := func() {}
		if p.Faults {
			stopFaults = w.injectFaults(ctx, injected)
		}
		soak := w.measure(ctx, "soak", func(rec *recorder) time.Duration { return w.mixed(ctx, rec, p.Duration, p.Seed) })
		stopFaults()
		if err := st.clearFaults(ctx); err != nil && !p.CrashEmulator {
			return nil, err
		}
		if len(injected) > 0 {
			soak.Faults = injected
		}
		rep.Mixed = &soak
	} else {
		mixed := w.measure(ctx, "mixed", func(rec *recorder) time.Duration { return w.mixed(ctx, rec, p.Duration, p.Seed) })
		rep.Mixed = &mixed
	}
	rep.Latency = latencyReport(rep.Mixed, rep.Floor, p)
	hot, err := w.measureHot(ctx, "hot player")
	if err != nil {
		return nil, err
	}
	rep.Hot = hot

	if p.Faults && p.Mutations == 0 {
		injected := map[string]int64{}
		stop := w.injectFaults(ctx, injected)
		fault := w.measure(ctx, "mixed with faults", func(rec *recorder) time.Duration { return w.mixed(ctx, rec, p.Duration, p.Seed+1) })
		faultHot, herr := w.measureHot(ctx, "hot player with faults")
		stop()
		if err := st.clearFaults(ctx); err != nil && !p.CrashEmulator {
			return nil, err
		}
		if herr != nil {
			return nil, herr
		}
		fault.Faults = injected
		rep.Fault, rep.FaultHot = &fault, faultHot
	}

	// Every instance (or the emulator) is up again when stop returns.
	rep.Crashes = crashes.stop()
	w.crashes = nil
	if len(rep.Crashes) > 0 {
		if err := waitReady(ctx, st.baseURL); err != nil {
			return nil, err
		}
	}
	var drain struct {
		left int
		took time.Duration
	}
	if st.events {
		if drain.left, drain.took, err = waitDrained(ctx, st.clients.Firestore, st.openCloud, p.DrainTimeout); err != nil {
			return nil, err
		}
	}

	if pl != nil {
		pl.stop(ctx)
		rep.LongPolls = pollRec.requestCount()
	}
	if leases != nil {
		lr := leases.stop()
		rep.Lease = &lr
	}

	inv, err := checkInvariants(ctx, st.clients.Firestore, st.project, st.cfg, w.exp, st.changes)
	if err != nil {
		return nil, err
	}
	rep.Invariants = inv
	if st.events {
		er := eventsReport(st, w.exp, inv.held, inv.LedgerEntries)
		er.UnpublishedAtEnd, er.DrainSeconds = drain.left, drain.took.Seconds()
		rep.Events = &er
		rep.Invariants.Violations = append(rep.Invariants.Violations, eventViolations(er, rep.Lease)...)
	}
	if smp != nil {
		rr := smp.stop()
		rep.Resources = &rr
		rep.Logs = processLogs(st.procs)
	}
	rep.Coverage = coverage(st)
	rep.exp = w.exp
	return rep, nil
}

// Event rules, as reported in violations.
const (
	ruleOutboxDrained  = "every outbox entry is published after the run"
	ruleOpenCloud      = "every companion write to a held player reached Open Cloud messaging"
	ruleLeaseExclusive = "the relay lease is held by one instance at a time"
	ruleAuditPerEntry  = "every ledger entry was published to the audit topic"
)

// eventViolations turns what the events report found missing into
// violations, so the run fails on them like on any invariant.
func eventViolations(er EventsReport, lr *LeaseReport) []Violation {
	var out []Violation
	if er.UnpublishedAtEnd > 0 {
		out = append(out, Violation{Rule: ruleOutboxDrained, Detail: fmt.Sprintf("%d entries still unpublished after %.0fs", er.UnpublishedAtEnd, er.DrainSeconds)})
	}
	if er.MissingOpenCloud > 0 {
		out = append(out, Violation{Rule: ruleOpenCloud, Detail: fmt.Sprintf("%d of %d never reached it, e.g. %v", er.MissingOpenCloud, er.HeldCompanionWrites, er.MissingOpenCloudSample)})
	}
	if er.AuditMissing > 0 {
		out = append(out, Violation{Rule: ruleAuditPerEntry, Detail: fmt.Sprintf("%d entries have no audit message", er.AuditMissing)})
	}
	if lr != nil && lr.Overlaps > 0 {
		out = append(out, Violation{Rule: ruleLeaseExclusive, Detail: fmt.Sprintf("%d handovers before the lease expired: %v", lr.Overlaps, lr.Details)})
	}
	return out
}

// processLogs counts each process's log lines by severity.
func processLogs(ps *procStack) map[string]ProcessLog {
	out := map[string]ProcessLog{}
	for _, p := range ps.all() {
		c, errs := p.logs.snapshot()
		_, inc := p.pid()
		out[p.name] = ProcessLog{Starts: inc, Lines: c, Errors: errs}
	}
	return out
}

// ProcessLog is what one process logged over all its incarnations.
type ProcessLog struct {
	Starts int              `json:"starts"`
	Lines  map[string]int64 `json:"lines"`
	Errors []string         `json:"errors,omitempty"`
}

// populate joins every player to a game server and links the companions.
func (w *world) populate(ctx context.Context, rec *recorder) error {
	w.players = make([]*player, w.p.Players)
	for i := range w.players {
		w.players[i] = &player{id: w.newPlayerID()}
	}
	errs := make([]error, len(w.players))
	sem := make(chan struct{}, w.p.Workers)
	var wg sync.WaitGroup
	for i, pl := range w.players {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pl.mu.Lock()
			errs[i] = w.join(ctx, rec, pl, w.jobs[i%len(w.jobs)], false)
			pl.mu.Unlock()
			if errs[i] == nil && i < w.p.Companions && w.st.companions {
				errs[i] = w.linkCompanion(ctx, rec, pl)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set up players: %w", err)
	}
	return nil
}

// measure runs a phase and reports it with the Firestore work it caused.
func (w *world) measure(ctx context.Context, name string, phase func(*recorder) time.Duration) PhaseReport {
	rec := newRecorder()
	before, berr := w.st.counters(ctx)
	sm := w.storeMetrics(ctx)
	took := phase(rec)
	after, aerr := w.st.counters(ctx)
	r := phaseReport(name, rec, took)
	// A restarted emulator starts its counters again from zero.
	if berr == nil && aerr == nil && !w.p.CrashEmulator {
		r.Firestore = firestoreReport(before, after, r.Mutations)
	}
	r.Firestore.addStore(sm, w.storeMetrics(ctx), r.Mutations)
	return r
}

// storeMetrics reads the store's counters from the services' Prometheus
// endpoints, summed over the instances: the figures an operator sees. It
// is nil with --url (no endpoint is known), when an endpoint does not
// answer, and after an instance crash (a restarted process counts from
// zero again, so a difference would be wrong).
func (w *world) storeMetrics(ctx context.Context) *store.Metrics {
	if len(w.st.metricsURLs) == 0 || w.p.CrashEvery > 0 || w.p.CrashEmulator {
		return nil
	}
	var sum store.Metrics
	for _, u := range w.st.metricsURLs {
		s, err := scrapeMetrics(ctx, http.DefaultClient, u)
		if err != nil {
			return nil
		}
		m := storeMetricsFrom(s)
		sum.Transactions += m.Transactions
		sum.Mutations += m.Mutations
		sum.Retries += m.Retries
		sum.Replays += m.Replays
	}
	return &sum
}

// probe sends sequential single mutations to one held player: with no
// concurrency and no grouping, the counters give the exact Firestore work
// of one write-through mutation.
func (w *world) probe(ctx context.Context) (PhaseReport, error) {
	p := &player{id: w.newPlayerID()}
	setup := newRecorder()
	if err := w.join(ctx, setup, p, w.jobs[0], false); err != nil {
		return PhaseReport{}, err
	}
	rng := rand.New(rand.NewPCG(w.p.Seed, 0x9806e))
	r := w.measure(ctx, "probe (sequential)", func(rec *recorder) time.Duration {
		start := time.Now()
		for range w.p.Probe {
			_, _ = w.mutate(ctx, rec, p, deltaOps(rng), nil)
		}
		return time.Since(start)
	})
	return r, nil
}

// compare sends the same planned mutations through the service and then
// directly through the Firestore client.
func (w *world) compare(ctx context.Context) (*Comparison, error) {
	muts := plan(w.p.Deltas, len(w.players), w.p.Seed)
	svc := w.measure(ctx, "service deltas", func(rec *recorder) time.Duration { return w.runPlanned(ctx, rec, muts) })

	ceilingProject := w.st.project + "-ceiling"
	ids := make([]int64, len(w.players))
	for i, p := range w.players {
		ids[i] = p.id
	}
	before, err := w.st.countersOf(ctx, ceilingProject)
	if err != nil {
		return nil, err
	}
	took, lat, failed, err := runCeiling(ctx, w.st.emuAddr, ceilingProject, w.st.cfg, ids, muts, w.p.Workers)
	if err != nil {
		return nil, err
	}
	after, err := w.st.countersOf(ctx, ceilingProject)
	if err != nil {
		return nil, err
	}
	done := int64(len(muts)) - failed
	ceil := SideReport{
		Seconds:   took.Seconds(),
		Mutations: done,
		PerSecond: float64(done) / took.Seconds(),
		Latency:   routeStats("Firestore RunTransaction", lat),
		Firestore: firestoreReport(before, after, done),
	}

	ceilClients, err := store.Dial(ctx, ceilingProject, w.st.emuAddr)
	if err != nil {
		return nil, err
	}
	defer ceilClients.Close()
	ceilInv, err := checkInvariants(ctx, ceilClients.Firestore, ceilingProject, w.st.cfg, nil, false)
	if err != nil {
		return nil, err
	}

	var svcLat RouteStats
	for _, r := range svc.Routes {
		if r.Route == routeMutation {
			svcLat = r
		}
	}
	side := SideReport{Seconds: svc.Seconds, Mutations: svc.Mutations, PerSecond: svc.MutationsPerSecond, Latency: svcLat, Firestore: svc.Firestore}
	c := &Comparison{Mutations: len(muts), Workers: w.p.Workers, Service: side, Ceiling: ceil, CeilingInvariants: ceilInv, ServicePhase: svc}
	c.ThroughputRatio = ratio(side.PerSecond, ceil.PerSecond)
	c.P50Ratio = ratio(side.Latency.P50ms, ceil.Latency.P50ms)
	c.P99Ratio = ratio(side.Latency.P99ms, ceil.Latency.P99ms)
	return c, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// measureHot runs the hot-player phase.
func (w *world) measureHot(ctx context.Context, name string) (*HotReport, error) {
	var hotErr error
	var hp *player
	r := w.measure(ctx, name, func(rec *recorder) time.Duration {
		var took time.Duration
		hp, took, hotErr = w.hotPlayer(ctx, rec)
		return took
	})
	if hotErr != nil {
		return nil, hotErr
	}
	visible := int64(0)
	for code, n := range r.Codes {
		if code != "" {
			visible += n
		}
	}
	h := &HotReport{
		UserID:              hp.id,
		Callers:             w.p.HotCallers,
		Each:                w.p.HotEach,
		Phase:               r,
		ErrorsSeenByCallers: visible,
		FailedAfterRetries:  r.CallerFailures,
	}
	return h, nil
}

// injectFaults arms one fault every FaultEvery, rotating through ABORTED,
// UNAVAILABLE and lost commit responses, until the returned stop is called.
// injected counts the faults armed; the next matching call takes each.
func (w *world) injectFaults(ctx context.Context, injected map[string]int64) (stop func()) {
	kinds := []struct {
		name  string
		fault emulator.Fault
	}{
		{"Commit ABORTED", emulator.Fault{Method: "Commit", Code: codes.Aborted}},
		{"BatchGetDocuments UNAVAILABLE", emulator.Fault{Method: "BatchGetDocuments", Code: codes.Unavailable}},
		{"Commit response lost", emulator.Fault{Method: "Commit", DropResponse: true}},
		{"Commit UNAVAILABLE", emulator.Fault{Method: "Commit", Code: codes.Unavailable}},
	}
	fctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(w.p.FaultEvery)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
			}
			// At most one fault waits at a time: the previous one is
			// dropped if no call took it, so faults cannot pile up when
			// calls are slower than the injection interval.
			k := kinds[i%len(kinds)]
			if err := w.st.clearFaults(fctx); err != nil {
				continue
			}
			if err := w.st.injectFault(fctx, k.fault); err == nil {
				mu.Lock()
				injected[k.name]++
				mu.Unlock()
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// coverage says plainly what this run did not exercise.
func coverage(st *stack) []string {
	var out []string
	if !st.companions {
		out = append(out, "companions: not run (no Firebase Auth emulator: set FIREBASE_AUTH_EMULATOR_HOST or --auth-emulator); the companion invalidation invariant was not exercised")
	}
	if !st.changes {
		out = append(out, "changes long-poll: the service does not serve it; invalidation delivery was not checked")
	}
	switch {
	case st.procs != nil:
		out = append(out, fmt.Sprintf("the service ran as %d processes of the cmd/savesync binary on one standalone emulator process; store transactions, retries and group sizes are summed from their Prometheus endpoints (SAVESYNC_METRICS=prometheus), and are left out of runs with crashes, since a restarted process counts from zero", len(st.bases)))
	case st.store == nil:
		out = append(out, "store retries: not available with --url (the emulator's abort count is reported instead)")
	default:
		out = append(out, "the service ran in this process with the wiring of cmd/savesync (cmd/internal/app), over loopback HTTP; store transactions, retries and group sizes are read from its Prometheus endpoint (SAVESYNC_METRICS=prometheus)")
	}
	if st.events {
		out = append(out, "events on: the outbox relay published to Pub/Sub (pstest, in the load tool) and the forwarder to the Open Cloud stand-in (50 + 5 × players publishes a minute); the relay's queries and marks are in the Firestore counters")
	} else {
		out = append(out, "events off: the outbox relay was off (SAVESYNC_OUTBOX_RELAY=off) and the Open Cloud forwarder had no key, so invalidations were checked in the ledger's outbox and through the long-poll only (--events turns them on)")
	}
	return out
}
