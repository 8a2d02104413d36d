// Command savesync-load drives savesync the way Roblox game servers and
// companion apps do, reports throughput, latency and Firestore work, and
// proves afterwards that nothing was lost or applied twice. It compares the
// service with the same transactions issued directly through the Firestore
// client (the ceiling) in the same run, and can inject Firestore faults.
//
// By default it starts everything itself on loopback: the Firestore
// emulator and the service's store and routes, in this process, over real
// HTTP. With --url it drives a running service instead and reads counters,
// faults and the data for the invariant checks from --emulator.
//
//	savesync-load --players 50 --duration 20s --faults --out load.json
//
// It exits non-zero when any invariant is violated.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/savesync/savesync/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "savesync-load:", err)
		os.Exit(1)
	}
}

// errViolations is returned when the run finished but an invariant failed.
var errViolations = errors.New("invariant violations: see the report")

// params are the knobs of one run, from the command line.
type params struct {
	URL          string        `json:"url,omitempty"`
	Emulator     string        `json:"emulator,omitempty"`
	Project      string        `json:"project"`
	ServerKey    string        `json:"-"`
	AuthEmulator string        `json:"authEmulator,omitempty"`
	GameConfig   string        `json:"gameConfig"`
	Players      int           `json:"players"`
	Servers      int           `json:"servers"`
	Companions   int           `json:"companions"`
	Workers      int           `json:"workers"`
	Duration     time.Duration `json:"duration"`
	Rate         float64       `json:"rate"`
	MaxRequests  int           `json:"maxRequests"`
	Deltas       int           `json:"deltas"`
	HotCallers   int           `json:"hotCallers"`
	HotEach      int           `json:"hotEach"`
	Probe        int           `json:"probe"`
	Faults       bool          `json:"faults"`
	FaultEvery   time.Duration `json:"faultEvery"`
	Attempts     int           `json:"attempts"`
	Seed         uint64        `json:"seed"`
	Out          string        `json:"-"`

	// Production-shaped runs.
	Instances     int           `json:"instances"`
	Concurrency   int           `json:"concurrency"`
	Events        bool          `json:"events"`
	Latency       time.Duration `json:"latency"`
	Jitter        time.Duration `json:"jitter"`
	FloorSamples  int           `json:"floorSamples"`
	CrashEvery    time.Duration `json:"crashEvery"`
	CrashEmulator bool          `json:"crashEmulator"`
	MinCrashes    int           `json:"minCrashes"`
	Mutations     int           `json:"mutations"`
	SampleEvery   time.Duration `json:"sampleEvery"`
	DrainTimeout  time.Duration `json:"drainTimeout"`
	AckDeadline   time.Duration `json:"ackDeadline"`
	// Bulk, with Players > 0, runs the bulk job measurement instead (bulk.go).
	Bulk bulkParams `json:"-"`
}

// Bounds keep every run finite whatever the flags say.
const (
	maxPlayers     = 10000
	maxWorkers     = 1024
	maxDuration    = 12 * time.Hour
	maxRequestsCap = 10_000_000
	maxHotCallers  = 500
	maxHotEach     = 1000
	maxInstances   = 16
	maxConcurrency = 1000
	maxLatency     = time.Second
	maxMutations   = 10_000_000
	minCrashEvery  = time.Second
)

// parseParams reads the command line; getenv supplies defaults for the
// Firebase Auth emulator.
func parseParams(args []string, getenv func(string) string) (params, error) {
	var p params
	fs := flag.NewFlagSet("savesync-load", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&p.URL, "url", "", "drive a running service at this loopback URL instead of starting one (needs --emulator)")
	fs.StringVar(&p.Emulator, "emulator", "", "host:port of the Firestore emulator the --url service uses (counters, faults, invariants)")
	fs.StringVar(&p.Project, "project", "demo-savesync", "Google Cloud project id in the emulator (and of the Auth emulator's tokens)")
	fs.StringVar(&p.ServerKey, "server-key", "", "game-server key of the --url service (default: one is generated for the in-process service)")
	fs.StringVar(&p.AuthEmulator, "auth-emulator", getenv("FIREBASE_AUTH_EMULATOR_HOST"), "host:port of the Firebase Auth emulator; companions run only with it")
	fs.StringVar(&p.GameConfig, "game-config", "config/sample-game.json", "game config (the same file the service runs with)")
	fs.IntVar(&p.Players, "players", 40, "players in the mixed workload")
	fs.IntVar(&p.Servers, "servers", 4, "simulated game servers (job ids)")
	fs.IntVar(&p.Companions, "companions", 8, "players that also have a linked companion app (needs --auth-emulator; at most --players)")
	fs.IntVar(&p.Workers, "workers", 16, "concurrent callers")
	fs.DurationVar(&p.Duration, "duration", 10*time.Second, "length of the mixed workload (and of the fault run)")
	fs.Float64Var(&p.Rate, "rate", 0, "requests per second across callers in the mixed workload; 0 = as fast as answered")
	fs.IntVar(&p.MaxRequests, "max-requests", 50000, "stop the mixed workload after this many requests (a soak, --mutations, has no such bound unless this is given)")
	fs.IntVar(&p.Deltas, "deltas", 2000, "mutations of the service-versus-ceiling comparison")
	fs.IntVar(&p.HotCallers, "hot-callers", 32, "concurrent callers mutating the one hot player")
	fs.IntVar(&p.HotEach, "hot-each", 5, "mutations each hot caller sends, one after another")
	fs.IntVar(&p.Probe, "probe", 20, "sequential mutations that measure Firestore round trips per mutation")
	fs.BoolVar(&p.Faults, "faults", false, "add a fault run: ABORTED, UNAVAILABLE and lost commit responses")
	fs.DurationVar(&p.FaultEvery, "fault-every", 100*time.Millisecond, "interval between injected faults in the fault run")
	fs.IntVar(&p.Attempts, "attempts", 6, "attempts per request on 5xx or transport errors, with the same Idempotency-Key")
	fs.Uint64Var(&p.Seed, "seed", 1, "seed of the workload's choices")
	fs.StringVar(&p.Out, "out", "", "write the report as JSON to this file")
	fs.IntVar(&p.Instances, "instances", 0, "run this many processes of the real cmd/savesync binary on one standalone emulator process, callers spread across them (0 = the service in this process)")
	fs.IntVar(&p.Concurrency, "concurrency", 80, "requests in flight per service instance at most, like Cloud Run's concurrency setting")
	fs.BoolVar(&p.Events, "events", false, "run the outbox relay (Pub/Sub through pstest) and the Open Cloud forwarder (to a local stand-in that enforces the universe's rate) and measure their delivery")
	fs.DurationVar(&p.Latency, "latency", 0, "median latency added to every emulator RPC (e.g. 16ms, like in-region Cloud Firestore)")
	fs.DurationVar(&p.Jitter, "jitter", 0, "mean of the exponential tail of that latency (16ms with 4.35ms give p50 16 ms, p99 33 ms, like in-region Cloud Firestore)")
	fs.IntVar(&p.FloorSamples, "floor-samples", 200, "pairs of sequential emulator reads that measure the physical floor of a mutation (its 2 round trips)")
	fs.DurationVar(&p.CrashEvery, "crash-every", 0, "kill -9 a service instance this often during the workload and restart it (needs --instances; 0 = never)")
	fs.BoolVar(&p.CrashEmulator, "crash-emulator", false, "with --crash-every, kill -9 and restart the standalone emulator (with its data directory) instead of a service instance")
	fs.IntVar(&p.MinCrashes, "min-crashes", 0, "with --crash-every, the mixed workload goes on past --duration and --mutations until this many crashes happened (at most 2 minutes more)")
	fs.IntVar(&p.Mutations, "mutations", 0, "soak: one mixed workload until this many mutations are acknowledged (bounded by --duration), --faults armed throughout; 0 = the usual phases")
	fs.DurationVar(&p.SampleEvery, "sample-every", 2*time.Second, "interval of the memory and file-descriptor samples of each process (with --instances)")
	fs.DurationVar(&p.AckDeadline, "ack-deadline", 60*time.Second, "with --events, the ack deadline of the forwarder's Pub/Sub subscription (the service creates it with 60s): how soon a crashed forwarder's invalidations go to another instance")
	fs.DurationVar(&p.DrainTimeout, "drain-timeout", 2*time.Minute, "with --events, how long to wait at the end for the outbox and the forwarder to deliver everything")
	fs.IntVar(&p.Bulk.Players, "bulk-players", 0, "measure a bulk job over this many players instead (needs --bulk-service)")
	fs.IntVar(&p.Bulk.Rate, "bulk-rate", store.DefaultBulkRate, "the bulk job's players per second")
	fs.StringVar(&p.Bulk.Service, "bulk-service", "", "a built savesync binary, run as a process and killed mid-job")
	fs.Float64Var(&p.Bulk.KillAt, "bulk-kill-at", 0.4, "kill the service once this share of the players is done")
	fs.IntVar(&p.Bulk.LiveWorkers, "bulk-live-workers", 8, "concurrent live callers measured with and without the job")
	fs.DurationVar(&p.Bulk.LiveFor, "bulk-live", 20*time.Second, "length of each live latency window")
	fs.IntVar(&p.Bulk.LivePlayers, "bulk-live-players", 1000, "players the live callers mutate (the first of the bulk players)")
	if err := fs.Parse(args); err != nil {
		return params{}, fmt.Errorf("%w\nflags:\n%s", err, flagUsage(fs))
	}
	if fs.NArg() > 0 {
		return params{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if p.Mutations > 0 && !flagGiven(fs, "max-requests") {
		// A soak is bounded by its mutations and --duration.
		p.MaxRequests = maxRequestsCap
	}
	var problems []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Errorf(format, args...))
		}
	}
	check(p.Players >= 1 && p.Players <= maxPlayers, "--players must be 1..%d", maxPlayers)
	check(p.Servers >= 2 && p.Servers <= 100, "--servers must be 2..100 (teleports need two)")
	check(p.Companions >= 0, "--companions must not be negative")
	p.Companions = min(p.Companions, p.Players)
	check(p.Workers >= 1 && p.Workers <= maxWorkers, "--workers must be 1..%d", maxWorkers)
	check(p.Duration > 0 && p.Duration <= maxDuration, "--duration must be above 0 and at most %s", maxDuration)
	check(p.Rate >= 0, "--rate must not be negative")
	check(p.MaxRequests >= 1 && p.MaxRequests <= maxRequestsCap, "--max-requests must be 1..%d", maxRequestsCap)
	check(p.Deltas >= 1 && p.Deltas <= maxRequestsCap, "--deltas must be 1..%d", maxRequestsCap)
	check(p.HotCallers >= 1 && p.HotCallers <= maxHotCallers, "--hot-callers must be 1..%d", maxHotCallers)
	check(p.HotEach >= 1 && p.HotEach <= maxHotEach, "--hot-each must be 1..%d", maxHotEach)
	check(p.Probe >= 1 && p.Probe <= 1000, "--probe must be 1..1000")
	check(p.FaultEvery >= time.Millisecond, "--fault-every must be at least 1ms")
	check(p.Attempts >= 1 && p.Attempts <= 20, "--attempts must be 1..20")
	check(p.Instances >= 0 && p.Instances <= maxInstances, "--instances must be 0..%d", maxInstances)
	check(p.Concurrency >= 1 && p.Concurrency <= maxConcurrency, "--concurrency must be 1..%d", maxConcurrency)
	check(p.Latency >= 0 && p.Latency <= maxLatency, "--latency must be 0..%s", maxLatency)
	check(p.Jitter >= 0 && p.Jitter <= maxLatency, "--jitter must be 0..%s", maxLatency)
	check(p.FloorSamples >= 1 && p.FloorSamples <= 10000, "--floor-samples must be 1..10000")
	check(p.CrashEvery == 0 || (p.CrashEvery >= minCrashEvery && p.CrashEvery <= time.Hour), "--crash-every must be 0 (off) or %s..1h", minCrashEvery)
	check(p.CrashEvery == 0 || p.Instances >= 1, "--crash-every needs --instances 1 or more (only processes can be killed)")
	check(!p.CrashEmulator || p.CrashEvery > 0, "--crash-emulator needs --crash-every (how often to kill the emulator)")
	check(p.MinCrashes >= 0 && p.MinCrashes <= 100, "--min-crashes must be 0..100")
	check(p.MinCrashes == 0 || p.CrashEvery > 0, "--min-crashes needs --crash-every")
	check(p.Mutations >= 0 && p.Mutations <= maxMutations, "--mutations must be 0..%d", maxMutations)
	check(p.SampleEvery >= 100*time.Millisecond && p.SampleEvery <= 10*time.Minute, "--sample-every must be 100ms..10m")
	check(p.AckDeadline >= 10*time.Second && p.AckDeadline <= 600*time.Second && p.AckDeadline%time.Second == 0, "--ack-deadline must be whole seconds, 10s..600s (Pub/Sub's range)")
	check(p.DrainTimeout >= time.Second && p.DrainTimeout <= time.Hour, "--drain-timeout must be 1s..1h")
	if p.Instances > 0 {
		check(p.URL == "" && p.Emulator == "", "--instances starts its own service processes and emulator: leave out --url and --emulator")
	}
	if p.URL != "" {
		check(!p.Events && p.Latency == 0 && p.Jitter == 0, "--events, --latency and --jitter need the tool to start the service (leave out --url)")
	}
	if p.Bulk.Players != 0 {
		check(p.Bulk.Players >= 1 && p.Bulk.Players <= 200_000, "--bulk-players must be 1..200000")
		check(p.Bulk.Service != "", "--bulk-players needs --bulk-service (go build -o /tmp/savesync ./cmd/savesync)")
		check(p.Bulk.Rate >= 1 && p.Bulk.Rate <= store.MaxBulkRate, "--bulk-rate must be 1..%d", store.MaxBulkRate)
		check(p.Bulk.KillAt > 0 && p.Bulk.KillAt < 1, "--bulk-kill-at must be between 0 and 1")
		check(p.Bulk.LiveWorkers >= 1 && p.Bulk.LiveWorkers <= maxWorkers, "--bulk-live-workers must be 1..%d", maxWorkers)
		check(p.Bulk.LiveFor > 0 && p.Bulk.LiveFor <= maxDuration, "--bulk-live must be above 0 and at most %s", maxDuration)
		p.Bulk.LivePlayers = max(1, min(p.Bulk.LivePlayers, p.Bulk.Players))
	}
	if p.URL != "" {
		check(p.Emulator != "", "--url needs --emulator (the Firestore emulator the service uses)")
		check(p.ServerKey != "", "--url needs --server-key")
		check(isLoopbackURL(p.URL), "--url must be on loopback (127.0.0.1, ::1 or localhost)")
	}
	if p.Emulator != "" {
		check(isLoopbackHost(p.Emulator), "--emulator must be on loopback")
	}
	if p.AuthEmulator != "" {
		check(isLoopbackHost(p.AuthEmulator), "--auth-emulator must be on loopback")
	}
	if len(problems) > 0 {
		return params{}, errors.Join(problems...)
	}
	return p, nil
}

// flagUsage lists the flags with their defaults.
func flagUsage(fs *flag.FlagSet) string {
	var out string
	fs.VisitAll(func(f *flag.Flag) {
		out += fmt.Sprintf("  --%s (default %q)\n      %s\n", f.Name, f.DefValue, f.Usage)
	})
	return out
}

func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && isLoopbackHost(u.Host)
}

func isLoopbackHost(hostPort string) bool {
	host := hostPort
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run parses args, runs the load and writes the report. It returns
// errViolations when an invariant failed.
func run(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	p, err := parseParams(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, err)
		return nil
	}
	if err != nil {
		return err
	}
	if p.Bulk.Players > 0 {
		return runBulk(ctx, p, p.Bulk, stdout)
	}
	st, err := startStack(ctx, p)
	if err != nil {
		return err
	}
	rep, err := runLoad(ctx, st, p)
	cerr := st.Close()
	if err != nil {
		return errors.Join(err, cerr)
	}
	writeTable(stdout, rep)
	if p.Out != "" {
		if err := writeJSON(p.Out, rep); err != nil {
			return err
		}
	}
	if cerr != nil {
		return cerr
	}
	if len(rep.Invariants.Violations) > 0 || len(ceilingViolations(rep)) > 0 {
		return errViolations
	}
	return nil
}

// flagGiven reports whether the command line set flag name.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}
