package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/savesync/savesync/emulator"
	"github.com/savesync/savesync/store"
)

// Report is everything one run measured and checked; it is written as JSON.
type Report struct {
	Machine    Machine               `json:"machine"`
	Params     params                `json:"params"`
	Stack      string                `json:"stack"`
	Probe      PhaseReport           `json:"probe"`
	Comparison *Comparison           `json:"comparison"`
	Mixed      *PhaseReport          `json:"mixed"`
	Hot        *HotReport            `json:"hot"`
	Fault      *PhaseReport          `json:"fault,omitempty"`
	FaultHot   *HotReport            `json:"faultHot,omitempty"`
	LongPolls  int64                 `json:"longPolls"`
	Floor      FloorReport           `json:"floor"`
	Latency    *LatencyReport        `json:"latency,omitempty"`
	Events     *EventsReport         `json:"events,omitempty"`
	Lease      *LeaseReport          `json:"relayLease,omitempty"`
	Crashes    []crashEvent          `json:"crashes,omitempty"`
	Resources  *ResourceReport       `json:"resources,omitempty"`
	Logs       map[string]ProcessLog `json:"logs,omitempty"`
	Invariants InvariantReport       `json:"invariants"`
	// Coverage lists what the run did not exercise, and how it ran.
	Coverage []string `json:"coverage"`

	// exp is what callers were told, for checks after the run.
	exp *expectations
}

// Machine is where the figures come from.
type Machine struct {
	CPU       string    `json:"cpu"`
	NumCPU    int       `json:"numCpu"`
	GoVersion string    `json:"goVersion"`
	OS        string    `json:"os"`
	Date      time.Time `json:"date"`
}

// PhaseReport is one phase as callers and the emulator saw it.
type PhaseReport struct {
	Name               string  `json:"name"`
	Seconds            float64 `json:"seconds"`
	Requests           int64   `json:"requests"`
	RequestsPerSecond  float64 `json:"requestsPerSecond"`
	Mutations          int64   `json:"mutations"`
	MutationsPerSecond float64 `json:"mutationsPerSecond"`
	Replays            int64   `json:"replays"`
	ClientRetries      int64   `json:"clientRetries"`
	// ClientRetriesPerMutation is the callers' resent requests per
	// committed mutation.
	ClientRetriesPerMutation float64          `json:"clientRetriesPerMutation"`
	CallerFailures           int64            `json:"callerFailures"`
	Codes                    map[string]int64 `json:"codes"`
	Routes                   []RouteStats     `json:"routes"`
	Firestore                FirestoreReport  `json:"firestore"`
	Faults                   map[string]int64 `json:"faults,omitempty"`
}

// FirestoreReport is the Firestore work of a phase.
type FirestoreReport struct {
	RPCs           map[string]int64 `json:"rpcs"`
	DocumentReads  int64            `json:"documentReads"`
	DocumentWrites int64            `json:"documentWrites"`
	Aborts         int64            `json:"aborts"`
	// AbortsPerMutation is the emulator's aborted transactions per
	// committed mutation: each is one store retry, so it stands for the
	// store's retries where the store's own counters cannot be read (a
	// service in another process).
	AbortsPerMutation float64 `json:"abortsPerMutation"`
	// RoundTripsPerMutation counts the transactional RPCs (BeginTransaction,
	// BatchGetDocuments, Commit, Rollback) per committed mutation; the
	// long-poll's queries are left out.
	RoundTripsPerMutation float64 `json:"roundTripsPerMutation"`
	WritesPerMutation     float64 `json:"writesPerMutation"`
	// Store counters, from the in-process service only.
	StoreTransactions       int64   `json:"storeTransactions,omitempty"`
	StoreRetries            int64   `json:"storeRetries,omitempty"`
	RetriesPerMutation      float64 `json:"retriesPerMutation,omitempty"`
	MutationsPerTransaction float64 `json:"mutationsPerTransaction,omitempty"`
}

// SideReport is one side of the service-versus-ceiling comparison.
type SideReport struct {
	Seconds   float64         `json:"seconds"`
	Mutations int64           `json:"mutations"`
	PerSecond float64         `json:"perSecond"`
	Latency   RouteStats      `json:"latency"`
	Firestore FirestoreReport `json:"firestore"`
}

// Comparison is the service against the same transactions issued directly
// through the Firestore client, in the same run.
type Comparison struct {
	Mutations         int             `json:"mutations"`
	Workers           int             `json:"workers"`
	Service           SideReport      `json:"service"`
	Ceiling           SideReport      `json:"ceiling"`
	ThroughputRatio   float64         `json:"throughputRatio"`
	P50Ratio          float64         `json:"p50Ratio"`
	P99Ratio          float64         `json:"p99Ratio"`
	CeilingInvariants InvariantReport `json:"ceilingInvariants"`
	ServicePhase      PhaseReport     `json:"servicePhase"`
}

// HotReport is the hot-player phase.
type HotReport struct {
	UserID  int64 `json:"userId"`
	Callers int   `json:"callers"`
	Each    int   `json:"each"`
	// ErrorsSeenByCallers counts non-2xx answers and lost connections on any
	// attempt; FailedAfterRetries those still failing after every attempt.
	ErrorsSeenByCallers int64       `json:"errorsSeenByCallers"`
	FailedAfterRetries  int64       `json:"failedAfterRetries"`
	Phase               PhaseReport `json:"phase"`
}

func phaseReport(name string, rec *recorder, took time.Duration) PhaseReport {
	rec.mu.Lock()
	r := PhaseReport{
		Name:           name,
		Seconds:        took.Seconds(),
		Requests:       rec.requests,
		Mutations:      rec.mutations,
		Replays:        rec.replays,
		ClientRetries:  rec.retries,
		CallerFailures: rec.failures,
		Codes:          map[string]int64{},
	}
	for k, v := range rec.codes {
		r.Codes[k] = v
	}
	rec.mu.Unlock()
	r.Routes = rec.routes()
	if took > 0 {
		r.RequestsPerSecond = float64(r.Requests) / took.Seconds()
		r.MutationsPerSecond = float64(r.Mutations) / took.Seconds()
	}
	if r.Mutations > 0 {
		r.ClientRetriesPerMutation = float64(r.ClientRetries) / float64(r.Mutations)
	}
	return r
}

// transactionalRPCs are the round trips a mutation costs.
var transactionalRPCs = []string{"BeginTransaction", "BatchGetDocuments", "Commit", "Rollback"}

func firestoreReport(before, after emulator.Counters, mutations int64) FirestoreReport {
	f := FirestoreReport{
		RPCs:           map[string]int64{},
		DocumentReads:  after.DocumentReads - before.DocumentReads,
		DocumentWrites: after.DocumentWrites - before.DocumentWrites,
		Aborts:         after.Aborts - before.Aborts,
	}
	for k, v := range after.RPCs {
		if d := v - before.RPCs[k]; d != 0 {
			f.RPCs[k] = d
		}
	}
	if mutations > 0 {
		var rt int64
		for _, m := range transactionalRPCs {
			rt += f.RPCs[m]
		}
		f.RoundTripsPerMutation = float64(rt) / float64(mutations)
		f.AbortsPerMutation = float64(f.Aborts) / float64(mutations)
		f.WritesPerMutation = float64(f.DocumentWrites) / float64(mutations)
	}
	return f
}

func (f *FirestoreReport) addStore(before, after *store.Metrics, mutations int64) {
	if before == nil || after == nil {
		return
	}
	f.StoreTransactions = after.Transactions - before.Transactions
	f.StoreRetries = after.Retries - before.Retries
	if mutations > 0 {
		f.RetriesPerMutation = float64(f.StoreRetries) / float64(mutations)
	}
	if f.StoreTransactions > 0 {
		f.MutationsPerTransaction = float64(after.Mutations-before.Mutations) / float64(f.StoreTransactions)
	}
}

func describeMachine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Date: time.Now().UTC().Truncate(time.Second)}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func describeStack(st *stack) string {
	if st.procs != nil {
		return fmt.Sprintf("%d cmd/savesync processes (%s), a standalone emulator process at %s with data in %s", len(st.bases), strings.Join(st.bases, ", "), st.emuAddr, st.procs.dataDir)
	}
	if st.store != nil {
		return "in-process service on " + st.baseURL + ", in-process Firestore emulator"
	}
	return "service at " + st.baseURL + ", Firestore emulator at " + st.emuAddr
}

// writeJSON writes the report to path.
func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeTable prints the report for people.
func writeTable(w io.Writer, rep *Report) {
	m := rep.Machine
	fmt.Fprintf(w, "savesync-load  %s  %d CPU (%s)  %s  %s\n", m.Date.Format(time.RFC3339), m.NumCPU, m.CPU, m.GoVersion, rep.Stack)
	fmt.Fprintf(w, "players %d, servers %d, companions %d, callers %d, seed %d\n\n", rep.Params.Players, rep.Params.Servers, rep.Params.Companions, rep.Params.Workers, rep.Params.Seed)

	p := rep.Probe.Firestore
	fmt.Fprintf(w, "Per write-through mutation (%d sequential): %.2f Firestore round trips %v, %.2f document writes\n\n",
		rep.Probe.Mutations, p.RoundTripsPerMutation, p.RPCs, p.WritesPerMutation)

	if c := rep.Comparison; c != nil {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "Service vs ceiling (%d delta mutations, %d callers; ceiling = Firestore client RunTransaction, no HTTP):\n", c.Mutations, c.Workers)
		fmt.Fprintln(tw, "\tmut/s\tp50 ms\tp95 ms\tp99 ms\tround trips/mut\twrites/mut\t")
		for _, s := range []struct {
			name string
			r    SideReport
		}{{"service", c.Service}, {"ceiling", c.Ceiling}} {
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t\n", s.name, s.r.PerSecond, s.r.Latency.P50ms, s.r.Latency.P95ms, s.r.Latency.P99ms,
				s.r.Firestore.RoundTripsPerMutation, s.r.Firestore.WritesPerMutation)
		}
		fmt.Fprintf(tw, "service/ceiling\t%.2f\t%.2f\t\t%.2f\t\t\t\n", c.ThroughputRatio, c.P50Ratio, c.P99Ratio)
		tw.Flush()
		fmt.Fprintln(w)
	}
	for _, ph := range []*PhaseReport{rep.Mixed, rep.Fault} {
		if ph != nil {
			writePhase(w, ph)
		}
	}
	for _, h := range []*HotReport{rep.Hot, rep.FaultHot} {
		if h == nil {
			continue
		}
		f := h.Phase.Firestore
		fmt.Fprintf(w, "%s: %d callers x %d deltas on player %d: %d committed in %.2fs (%.0f/s); errors seen by callers %d, failed after retries %d; store retries/mutation %.3f, mutations/transaction %.1f, aborts %d\n",
			h.Phase.Name, h.Callers, h.Each, h.UserID, h.Phase.Mutations, h.Phase.Seconds, h.Phase.MutationsPerSecond,
			h.ErrorsSeenByCallers, h.FailedAfterRetries, f.RetriesPerMutation, f.MutationsPerTransaction, f.Aborts)
	}
	fmt.Fprintln(w)
	writeProduction(w, rep)
	inv := rep.Invariants
	fmt.Fprintf(w, "Invariants: %d players, %d ledger entries, %d acknowledged mutations checked, %d companion writes (%d to held players, %d delivered by long-poll)\n",
		inv.Players, inv.LedgerEntries, inv.AckedChecked, inv.CompanionEntries, inv.CompanionHeld, inv.Delivered)
	if c := rep.Comparison; c != nil {
		fmt.Fprintf(w, "Ceiling data: %d players, %d ledger entries, %d violations\n", c.CeilingInvariants.Players, c.CeilingInvariants.LedgerEntries, len(c.CeilingInvariants.Violations))
	}
	violations := append(append([]Violation(nil), inv.Violations...), ceilingViolations(rep)...)
	if len(violations) == 0 {
		fmt.Fprintln(w, "PASS: no violations")
	} else {
		fmt.Fprintf(w, "FAIL: %d violations\n", len(violations))
		for i, v := range violations {
			if i == 50 {
				fmt.Fprintf(w, "  … %d more in the JSON report\n", len(violations)-50)
				break
			}
			fmt.Fprintf(w, "  player %d: %s: %s\n", v.UserID, v.Rule, v.Detail)
		}
	}
	for _, c := range rep.Coverage {
		fmt.Fprintln(w, "note:", c)
	}
}

func ceilingViolations(rep *Report) []Violation {
	if rep.Comparison == nil {
		return nil
	}
	return rep.Comparison.CeilingInvariants.Violations
}

func writePhase(w io.Writer, ph *PhaseReport) {
	f := ph.Firestore
	fmt.Fprintf(w, "%s: %.1fs, %d requests (%.0f/s), %d mutations (%.0f/s), %d client retries, %d failed after retries, %d replayed answers\n",
		ph.Name, ph.Seconds, ph.Requests, ph.RequestsPerSecond, ph.Mutations, ph.MutationsPerSecond, ph.ClientRetries, ph.CallerFailures, ph.Replays)
	fmt.Fprintf(w, "  Firestore: %.2f round trips/mutation, %.2f writes/mutation, %d aborts, store retries/mutation %.3f, mutations/transaction %.2f\n",
		f.RoundTripsPerMutation, f.WritesPerMutation, f.Aborts, f.RetriesPerMutation, f.MutationsPerTransaction)
	if len(ph.Faults) > 0 {
		fmt.Fprintf(w, "  faults armed: %s\n", sortedCounts(ph.Faults))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  route\tcount\tp50 ms\tp95 ms\tp99 ms\tmax ms\t")
	for _, r := range ph.Routes {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t\n", r.Route, r.Count, r.P50ms, r.P95ms, r.P99ms, r.MaxMs)
	}
	tw.Flush()
	if len(ph.Codes) > 0 {
		fmt.Fprintf(w, "  answers other than 2xx: %s\n", sortedCounts(ph.Codes))
	}
	fmt.Fprintln(w)
}

func sortedCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// writeProduction prints the latency against the floor, the events, the
// crashes, the relay lease and the processes' resources.
func writeProduction(w io.Writer, rep *Report) {
	if l := rep.Latency; l != nil {
		fmt.Fprintf(w, "Latency of %q at %d requests in flight per instance at most (%.0f callers per instance), emulator latency %.1f ms + jitter up to %.1f ms\n",
			l.Phase, l.InstanceConcurrency, l.CallersPerInstance, l.EmulatorLatencyMs, l.EmulatorJitterMs)
		fmt.Fprintf(w, "  floor (2 sequential emulator round trips, %d samples): p50 %.2f ms, p99 %.2f ms (nominal %.1f ms)\n", l.Floor.Samples, l.Floor.P50ms, l.Floor.P99ms, l.Floor.NominalMs)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  route\tcount\tp50 ms\tp99 ms\tp50/floor\tp99/floor\t")
		for _, r := range l.Routes {
			fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t\n", r.Route, r.Count, r.P50ms, r.P99ms, r.P50ByFloor, r.P99ByFloor)
		}
		tw.Flush()
		fmt.Fprintf(w, "  mutation p50/floor %.2f (target ≤ 1.3: %v), p99 %.1f ms (target ≤ 200 ms: %v)\n\n", l.MutationP50ByFloor, l.MutationP50TargetMet, l.MutationP99ms, l.MutationP99Under200ms)
	}
	if e := rep.Events; e != nil {
		fmt.Fprintf(w, "Events: %d audit and %d invalidation messages on Pub/Sub (%d published again), %d entries without an audit message, %d unpublished at the end (drained in %.1fs)\n",
			e.AuditMessages, e.InvalidationMessages, e.DuplicatePublishes, e.AuditMissing, e.UnpublishedAtEnd, e.DrainSeconds)
		fmt.Fprintf(w, "  Open Cloud: %d messages accepted, %d answered 429, %d refused\n", e.OpenCloudMessages, e.OpenCloudThrottled, e.OpenCloudRefused)
		fmt.Fprintf(w, "  companion writes to held players: %d; reached Open Cloud %d (missing %d), reached the holder's long-poll %d (missing %d)\n",
			e.HeldCompanionWrites, e.ReachedOpenCloud, e.MissingOpenCloud, e.ReachedLongPoll, e.MissingLongPoll)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  from commit to\tcount\tp50 ms\tp99 ms\t")
		for _, r := range []RouteStats{e.CommitToPubSub, e.CommitToInvalidation, e.CommitToOpenCloud, e.CommitToLongPoll} {
			fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t\n", r.Route, r.Count, r.P50ms, r.P99ms)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if l := rep.Lease; l != nil {
		fmt.Fprintf(w, "Relay lease: %d samples, %d holders, %d handovers, %d overlaps, %d failed reads\n", l.Samples, l.Holders, l.Handovers, l.Overlaps, l.ReadFails)
	}
	if len(rep.Crashes) > 0 {
		var restart []time.Duration
		failed := 0
		for _, c := range rep.Crashes {
			restart = append(restart, time.Duration(c.RestartMs*float64(time.Millisecond)))
			if c.Error != "" {
				failed++
			}
		}
		st := routeStats("restart", restart)
		fmt.Fprintf(w, "Crashes: %d kill -9 and restarts (%d restarts failed), restart to ready p50 %.0f ms, p99 %.0f ms\n", len(rep.Crashes), failed, st.P50ms, st.P99ms)
	}
	if r := rep.Resources; r != nil {
		fmt.Fprintf(w, "Resources (every %.1fs; growth = mean of the last quarter of the samples minus the second quarter):\n", r.EverySeconds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  process\tincarnations\tlongest: samples\tmax RSS MiB\tRSS growth MiB\tmax fds\tfd growth\t")
		// Per process, its longest-lived incarnation (a crash starts a new one).
		longest := map[string]ProcessSeries{}
		count := map[string]int{}
		var names []string
		for _, p := range r.Processes {
			if count[p.Name] == 0 {
				names = append(names, p.Name)
			}
			count[p.Name]++
			if len(p.Samples) > len(longest[p.Name].Samples) {
				longest[p.Name] = p
			}
		}
		for _, name := range names {
			p := longest[name]
			fmt.Fprintf(tw, "  %s\t%d\t#%d: %d\t%.1f\t%+.1f\t%d\t%+.1f\t\n", name, count[name], p.Incarnation, len(p.Samples), float64(p.MaxRSSKiB)/1024, float64(p.RSSGrowthKiB)/1024, p.MaxFDs, p.FDGrowth)
		}
		tw.Flush()
		fmt.Fprintf(w, "  emulator data directory at the end: %.1f MiB\n", float64(r.DataDirEnd)/(1<<20))
	}
	for _, name := range sortedKeys(rep.Logs) {
		l := rep.Logs[name]
		fmt.Fprintf(w, "Log of %s (%d starts): %s\n", name, l.Starts, sortedCounts(l.Lines))
	}
	fmt.Fprintln(w)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
