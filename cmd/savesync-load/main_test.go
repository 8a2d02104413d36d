package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"

	"github.com/savesync/savesync/internal/authtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	authtest.Stop()
	os.Exit(code)
}

// TestRunSmoke runs the whole tool on a tiny bounded workload, companions
// and fault run included, and checks its JSON report.
func TestRunSmoke(t *testing.T) {
	auth := authEmulator(t)
	out := filepath.Join(t.TempDir(), "load.json")
	args := []string{
		"--game-config", "../../config/sample-game.json",
		"--auth-emulator", auth,
		"--players", "6", "--servers", "3", "--companions", "3", "--workers", "6",
		"--duration", "1500ms", "--deltas", "80", "--probe", "5",
		"--hot-callers", "24", "--hot-each", "2",
		"--faults", "--fault-every", "20ms",
		"--out", out,
	}
	var rep Report
	stdout := runReport(t, args, out, 3*time.Minute, &rep)
	if !strings.Contains(stdout, "PASS: no violations") {
		t.Errorf("stdout lacks the PASS line:\n%s", stdout)
	}

	if diff := cmp.Diff([]Violation{}, rep.Invariants.Violations); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	// The probe is sequential: its Firestore work per mutation is exact.
	gotProbe := map[string]float64{
		"roundTrips": rep.Probe.Firestore.RoundTripsPerMutation,
		"writes":     rep.Probe.Firestore.WritesPerMutation,
		"mutations":  float64(rep.Probe.Mutations),
	}
	if diff := cmp.Diff(map[string]float64{"roundTrips": 2, "writes": 2, "mutations": 5}, gotProbe); diff != "" {
		t.Errorf("probe (-want +got):\n%s", diff)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"the comparison committed every planned mutation on both sides", rep.Comparison.Service.Mutations == 80 && rep.Comparison.Ceiling.Mutations == 80},
		{"the ceiling data passes the same invariants", len(rep.Comparison.CeilingInvariants.Violations) == 0 && rep.Comparison.CeilingInvariants.LedgerEntries == 80},
		{"the mixed workload committed mutations", rep.Mixed.Mutations > 0},
		{"the store's transactions were read from the service's metrics endpoint", rep.Mixed.Firestore.StoreTransactions > 0 && rep.Mixed.Firestore.MutationsPerTransaction >= 1},
		{"every hot delta was acknowledged", rep.Hot.Phase.Mutations == 48 && rep.Hot.FailedAfterRetries == 0},
		{"faults were injected", rep.Fault != nil && len(rep.Fault.Faults) == 4},
		{"the fault run committed mutations", rep.Fault != nil && rep.Fault.Mutations > 0},
		{"every hot delta under faults was acknowledged", rep.FaultHot != nil && rep.FaultHot.Phase.Mutations == 48},
		{"companions wrote to held players", rep.Invariants.CompanionHeld > 0},
		{"every held companion write was delivered", rep.Invariants.DeliveryChecked && rep.Invariants.Delivered == rep.Invariants.CompanionHeld},
		{"every acknowledged mutation was checked", rep.Invariants.AckedChecked > 0 && rep.Invariants.AckedChecked <= rep.Invariants.LedgerEntries},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no\n%s", c.name, stdout)
		}
	}
}

// TestInvariantsDetectCorruption runs a small workload, then damages the
// data in ways a bug could, and expects each to be reported.
func TestInvariantsDetectCorruption(t *testing.T) {
	p, err := parseParams([]string{
		"--game-config", "../../config/sample-game.json",
		"--players", "5", "--servers", "2", "--workers", "4",
		"--duration", "700ms", "--deltas", "40", "--probe", "3",
		"--hot-callers", "4", "--hot-each", "2",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := startStack(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rep, err := runLoad(ctx, st, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Invariants.AckedChecked == 0 {
		t.Fatal("the run acknowledged nothing")
	}
	if len(rep.Invariants.Violations) != 0 {
		t.Fatalf("violations before any corruption: %+v", rep.Invariants.Violations)
	}
	fs := st.clients.Firestore

	players := []int64{firstPlayerID + 1, firstPlayerID + 2, firstPlayerID + 3, firstPlayerID + 4}
	tests := []struct {
		name    string
		userID  int64
		corrupt func(t *testing.T, ref *firestore.DocumentRef)
		want    []string
	}{
		{
			name:   "balance edited outside a mutation",
			userID: players[0],
			corrupt: func(t *testing.T, ref *firestore.DocumentRef) {
				update(t, ref, firestore.Update{Path: "save.currencies.coins", Value: firestore.Increment(7)})
			},
			want: []string{ruleBalanceChanges, ruleBalanceOps},
		},
		{
			name:   "ledger entry lost",
			userID: players[1],
			corrupt: func(t *testing.T, ref *firestore.DocumentRef) {
				e := ledgerAt(t, ref, 1)
				if _, err := e.Ref.Delete(context.Background()); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{ruleAcked, ruleVersionChain, ruleVersionCount},
		},
		{
			name:   "idempotency key applied twice",
			userID: players[2],
			corrupt: func(t *testing.T, ref *firestore.DocumentRef) {
				version := playerVersion(t, ref)
				e := ledgerAt(t, ref, version)
				dup := e.Data()
				dup["versionBefore"], dup["version"] = version, version+1
				dup["changes"] = []any{}
				if _, err := ref.Collection("ledger").Doc("duplicate").Create(context.Background(), dup); err != nil {
					t.Fatal(err)
				}
				update(t, ref, firestore.Update{Path: "version", Value: version + 1})
			},
			want: []string{ruleKeyOnce},
		},
		{
			name:   "version bumped without a ledger entry",
			userID: players[3],
			corrupt: func(t *testing.T, ref *firestore.DocumentRef) {
				update(t, ref, firestore.Update{Path: "version", Value: firestore.Increment(1)})
			},
			want: []string{ruleVersionCount},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.corrupt(t, fs.Collection("players").Doc(strconv.FormatInt(tc.userID, 10)))
			inv, err := checkInvariants(ctx, fs, st.project, st.cfg, rep.exp, false)
			if err != nil {
				t.Fatal(err)
			}
			// Other rules may fire too, depending on the ops the run chose.
			want := map[string]bool{}
			for _, r := range tc.want {
				want[r] = true
			}
			got := map[string]bool{}
			for _, v := range inv.Violations {
				if v.UserID == tc.userID && want[v.Rule] {
					got[v.Rule] = true
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rules violated for player %d (-want +got):\n%s", tc.userID, diff)
			}
		})
	}
}

func update(t *testing.T, ref *firestore.DocumentRef, u firestore.Update) {
	t.Helper()
	if _, err := ref.Update(context.Background(), []firestore.Update{u}); err != nil {
		t.Fatal(err)
	}
}

func playerVersion(t *testing.T, ref *firestore.DocumentRef) int64 {
	t.Helper()
	snap, err := ref.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := snap.Data()["version"].(int64)
	if v < 2 {
		t.Fatalf("player %s has version %d; the corruption needs at least 2", ref.ID, v)
	}
	return v
}

func ledgerAt(t *testing.T, ref *firestore.DocumentRef, version int64) *firestore.DocumentSnapshot {
	t.Helper()
	docs, err := ref.Collection("ledger").Where("version", "==", version).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("player %s: %d ledger entries at version %d", ref.ID, len(docs), version)
	}
	return docs[0]
}

// authEmulator returns the Firebase Auth emulator's host:port (see
// internal/authtest).
func authEmulator(t *testing.T) string {
	t.Helper()
	return authtest.Host(t, "demo-savesync")
}

// TestParseParamsRefusesOutOfRange checks that every bounded flag refuses
// a value out of its range with a message naming the flag and its range.
func TestParseParamsRefusesOutOfRange(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--players", "0"}, "--players must be 1..10000"},
		{[]string{"--workers", "2000"}, "--workers must be 1..1024"},
		{[]string{"--duration", "0s"}, "--duration must be above 0 and at most 12h0m0s"},
		{[]string{"--duration", "13h"}, "--duration must be above 0 and at most 12h0m0s"},
		{[]string{"--instances", "-1"}, "--instances must be 0..16"},
		{[]string{"--instances", "17"}, "--instances must be 0..16"},
		{[]string{"--concurrency", "0"}, "--concurrency must be 1..1000"},
		{[]string{"--latency", "2s"}, "--latency must be 0..1s"},
		{[]string{"--jitter", "-1ms"}, "--jitter must be 0..1s"},
		{[]string{"--floor-samples", "0"}, "--floor-samples must be 1..10000"},
		{[]string{"--instances", "2", "--crash-every", "10ms"}, "--crash-every must be 0 (off) or 1s..1h"},
		{[]string{"--crash-every", "5s"}, "--crash-every needs --instances 1 or more"},
		{[]string{"--crash-emulator"}, "--crash-emulator needs --crash-every"},
		{[]string{"--min-crashes", "2"}, "--min-crashes needs --crash-every"},
		{[]string{"--mutations", "20000000"}, "--mutations must be 0..10000000"},
		{[]string{"--max-requests", "0"}, "--max-requests must be 1..10000000"},
		{[]string{"--sample-every", "1ms"}, "--sample-every must be 100ms..10m"},
		{[]string{"--drain-timeout", "0s"}, "--drain-timeout must be 1s..1h"},
		{[]string{"--ack-deadline", "5s"}, "--ack-deadline must be whole seconds, 10s..600s"},
		{[]string{"--instances", "2", "--url", "http://127.0.0.1:1", "--emulator", "127.0.0.1:2", "--server-key", "k"}, "--instances starts its own service processes and emulator"},
		{[]string{"--events", "--url", "http://127.0.0.1:1", "--emulator", "127.0.0.1:2", "--server-key", "k"}, "--events, --latency and --jitter need the tool to start the service"},
		{[]string{"--url", "http://10.0.0.1:8080", "--emulator", "127.0.0.1:2", "--server-key", "k"}, "--url must be on loopback"},
		{[]string{"--emulator", "example.com:8081"}, "--emulator must be on loopback"},
		{[]string{"--players", "many"}, `invalid value "many" for flag -players`},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseParams(tc.args, func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseParams(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestEmulatorLatencyArgs checks the flags the standalone emulator gets
// for the latency model.
func TestEmulatorLatencyArgs(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{nil, nil},
		{[]string{"--latency", "16ms"}, []string{"--latency", "16ms", "--jitter", "0s"}},
		{[]string{"--latency", "16ms", "--jitter", "17ms"}, []string{"--latency", "16ms", "--jitter", "17ms"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			p, err := parseParams(tc.args, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, emulatorLatencyArgs(p)); diff != "" {
				t.Errorf("emulator flags (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInstancesSurviveCrashes runs the real binary as two instances on a
// standalone emulator process with events on, kills -9 an instance at
// least twice during the workload, and checks that nothing was lost or
// applied twice, every outbox entry was published, every companion write
// to a held player reached Open Cloud and its server's long-poll, and the
// relay lease never had two holders at once.
func TestInstancesSurviveCrashes(t *testing.T) {
	auth := authEmulator(t)
	out := filepath.Join(t.TempDir(), "load.json")
	args := []string{
		"--game-config", "../../config/sample-game.json",
		"--auth-emulator", auth,
		"--instances", "2", "--events", "--crash-every", "2s", "--min-crashes", "2", "--ack-deadline", "10s",
		"--players", "6", "--servers", "2", "--companions", "3", "--workers", "6",
		"--duration", "2s", "--mutations", "300", "--deltas", "40", "--probe", "3",
		"--hot-callers", "8", "--hot-each", "2", "--floor-samples", "10",
		// After crashes every 2 s, a hot player's last invalidations wait
		// for redelivery (10 s ack deadline each time their forwarder was
		// killed) and for the universe's Open Cloud budget: one run took
		// over 90 s to deliver them all.
		"--attempts", "8", "--drain-timeout", "150s",
		"--out", out,
	}
	var rep Report
	stdout := runReport(t, args, out, 6*time.Minute, &rep)
	if diff := cmp.Diff([]Violation{}, rep.Invariants.Violations); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	failedRestarts := 0
	for _, c := range rep.Crashes {
		if c.Error != "" {
			failedRestarts++
			t.Logf("a restart failed: %s", c.Error)
		}
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"at least two instances were killed and restarted", len(rep.Crashes) >= 2 && failedRestarts == 0},
		{"the workload committed mutations", rep.Mixed.Mutations > 0 && rep.Invariants.AckedChecked > 0},
		{"events were reported", rep.Events != nil},
		{"no outbox entry was left unpublished", rep.Events != nil && rep.Events.UnpublishedAtEnd == 0 && rep.Events.AuditMissing == 0},
		{"companions wrote to held players", rep.Events != nil && rep.Events.HeldCompanionWrites > 0},
		{"every held companion write reached Open Cloud", rep.Events != nil && rep.Events.MissingOpenCloud == 0},
		{"the relay lease was sampled, never two holders at once", rep.Lease != nil && rep.Lease.Samples > 0 && rep.Lease.Overlaps == 0},
		{"resources were sampled for every process", rep.Resources != nil && len(rep.Resources.Processes) >= 4},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no\n%s", c.name, stdout)
		}
	}
}

// runReport runs the tool with args, which write the report to out, within
// timeout, decodes the report into rep and returns what the tool printed.
func runReport(t *testing.T, args []string, out string, timeout time.Duration, rep any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout bytes.Buffer
	if err := run(ctx, args, &stdout, func(string) string { return "" }); err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, rep); err != nil {
		t.Fatal(err)
	}
	return stdout.String()
}

// TestSoakIsNotCutByTheRequestBound checks that a soak (--mutations) runs
// to its mutation count: the mixed workload's default bound of 50,000
// requests applies only when --max-requests is given.
func TestSoakIsNotCutByTheRequestBound(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 50000},
		{[]string{"--mutations", "1000000"}, maxRequestsCap},
		{[]string{"--mutations", "1000000", "--max-requests", "70000"}, 70000},
	} {
		p, err := parseParams(tc.args, env)
		if err != nil {
			t.Fatalf("parseParams(%q): %v", tc.args, err)
		}
		if p.MaxRequests != tc.want {
			t.Errorf("parseParams(%q): max requests %d, want %d", tc.args, p.MaxRequests, tc.want)
		}
	}
}
